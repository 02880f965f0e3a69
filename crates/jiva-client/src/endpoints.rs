//! Which of a service's endpoints (the nodes of a cluster) the client connects to.

/// The endpoints in the order they are tried: [`Config::url`](crate::Config::url) first, then
/// [`Config::fallback_urls`](crate::Config::fallback_urls). The client stays on the endpoint
/// that serves it; after a drop it first tries that endpoint again (the drop may have been the
/// network's), and every failed attempt moves it to the next endpoint, wrapping around. So a
/// client of a killed node is on another node after one failed attempt, and a client whose
/// every node is gone keeps cycling through them at the backoff's pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoints {
    urls: Vec<String>,
    current: usize,
}

impl Endpoints {
    /// `first`, then `others`, starting at `first`.
    pub(crate) fn new(first: &str, others: &[String]) -> Self {
        let mut urls = Vec::with_capacity(1 + others.len());
        urls.push(first.to_owned());
        urls.extend(others.iter().cloned());
        Self { urls, current: 0 }
    }

    /// How many endpoints there are (at least 1).
    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// The index of the endpoint tried next (0 is `url`).
    pub(crate) fn index(&self) -> usize {
        self.current
    }

    /// The endpoint tried next.
    pub(crate) fn current(&self) -> &str {
        self.urls
            .get(self.current)
            .or(self.urls.first())
            .map_or("", String::as_str)
    }

    /// An attempt on the current endpoint failed: the next one is tried next.
    pub(crate) fn failed(&mut self) {
        self.current = (self.current + 1) % self.urls.len().max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_moves_to_the_next_endpoint_and_wraps_around() {
        let mut e = Endpoints::new("ws://a/", &["ws://b/".into(), "ws://c/".into()]);
        assert_eq!((e.len(), e.index(), e.current()), (3, 0, "ws://a/"));
        e.failed();
        assert_eq!(e.current(), "ws://b/");
        e.failed();
        assert_eq!(e.current(), "ws://c/");
        e.failed();
        assert_eq!((e.index(), e.current()), (0, "ws://a/"));
    }

    #[test]
    fn a_single_endpoint_is_always_the_one_tried() {
        let mut e = Endpoints::new("ws://a/", &[]);
        e.failed();
        e.failed();
        assert_eq!((e.len(), e.index(), e.current()), (1, 0, "ws://a/"));
    }
}

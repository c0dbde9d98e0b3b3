//! The route index: host → path → ranked candidates. Lookup cost depends on the request
//! (host labels, path depth), never on the number of routes.
//!
//! Priority rule, highest first, compared as a tuple:
//! 1. explicit `priority`;
//! 2. host specificity: exact host > `*.suffix` (longer suffix first) > no host condition;
//! 3. path specificity: exact path > template (more literal characters first) > prefix
//!    (longer first);
//! 4. number of other conditions (methods, headers, query);
//! 5. declaration order: the route written first wins.
//!
//! Within one host group, the exact paths, the templates (matchit radix tree) and each prefix
//! level of the request path each yield their best candidate whose conditions pass; the
//! highest ranked of those wins. Known limit: among templates only the most specific matching
//! template (matchit's choice) is considered, so `/a/{x}` (POST only) does not fall back to
//! `/a/{*rest}` for a GET; exact paths and prefixes always fall back.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::compile::{CompiledRoute, route_patterns};
use crate::error::{ConfigError, FieldPath};
use crate::model::Config;
use crate::path_template::PathPattern;

/// The parts of a request that routing reads. `host` is lowercase, without port.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

/// The winning route and the template parameters it captured.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route: Arc<CompiledRoute>,
    pub params: Vec<(Arc<str>, String)>,
}

/// Ordering key of a candidate; larger wins.
type Rank = (i32, u32, u32, usize, Reverse<usize>);

#[derive(Debug, Clone)]
struct Candidate {
    rank: Rank,
    route: Arc<CompiledRoute>,
    /// User names of the template parameters, in `p0, p1, …` order.
    params: Arc<[Arc<str>]>,
}

#[derive(Debug, Default)]
struct PathTable {
    exact: HashMap<Box<str>, Vec<Candidate>>,
    templates: Option<matchit::Router<Vec<Candidate>>>,
    /// Keyed by the prefix without trailing slash; `""` is the root prefix `/*`.
    prefixes: HashMap<Box<str>, Vec<Candidate>>,
}

/// All routes of one listener, indexed.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<Box<str>, PathTable>,
    /// `*.example.com` stored as `example.com`.
    wildcard_hosts: HashMap<Box<str>, PathTable>,
    any_host: PathTable,
    len: usize,
}

struct TableBuilder {
    exact: HashMap<Box<str>, Vec<Candidate>>,
    /// In declaration order, so a conflict is reported at the later route.
    templates: Vec<(String, FieldPath, Vec<Candidate>)>,
    template_index: HashMap<String, usize>,
    prefixes: HashMap<Box<str>, Vec<Candidate>>,
}

impl TableBuilder {
    fn new() -> Self {
        Self {
            exact: HashMap::new(),
            templates: Vec::new(),
            template_index: HashMap::new(),
            prefixes: HashMap::new(),
        }
    }

    fn finish(self, errors: &mut Vec<ConfigError>) -> PathTable {
        let sort = |mut v: Vec<Candidate>| {
            v.sort_by_key(|c| std::cmp::Reverse(c.rank));
            v
        };
        let templates = if self.templates.is_empty() {
            None
        } else {
            let mut router = matchit::Router::new();
            let mut inserted: HashMap<String, FieldPath> = HashMap::new();
            for (pattern, path, candidates) in self.templates {
                match router.insert(pattern.clone(), sort(candidates)) {
                    Ok(()) => {
                        inserted.insert(pattern, path);
                    }
                    Err(matchit::InsertError::Conflict { with }) => {
                        let other = inserted
                            .get(&with)
                            .map_or_else(|| "another path".to_string(), |p| p.to_string());
                        errors.push(path.error(format!(
                            "ambiguous with {other}: the router cannot tell which template a path belongs to"
                        )));
                    }
                    Err(e) => errors.push(path.error(format!("cannot be routed: {e}"))),
                }
            }
            Some(router)
        };
        PathTable {
            exact: self.exact.into_iter().map(|(k, v)| (k, sort(v))).collect(),
            templates,
            prefixes: self
                .prefixes
                .into_iter()
                .map(|(k, v)| (k, sort(v)))
                .collect(),
        }
    }
}

impl RouteTable {
    /// Index the routes at `members` (indices into `routes`).
    pub(crate) fn build(
        config: &Config,
        routes: &[Arc<CompiledRoute>],
        members: &[usize],
    ) -> Result<Self, Vec<ConfigError>> {
        let mut any = TableBuilder::new();
        let mut exact_hosts: HashMap<Box<str>, TableBuilder> = HashMap::new();
        let mut wildcard_hosts: HashMap<Box<str>, TableBuilder> = HashMap::new();
        for &i in members {
            let rc = &config.routes[i];
            let route = &routes[i];
            let patterns = route_patterns(i, rc);
            let add = |builder: &mut TableBuilder, host_rank: u32| {
                for (path, pattern) in &patterns {
                    add_candidate(builder, route, host_rank, path, pattern);
                }
            };
            if rc.matcher.hosts.is_empty() {
                add(&mut any, 0);
            }
            for host in &rc.matcher.hosts {
                match host.strip_prefix("*.") {
                    Some(suffix) => {
                        let b = wildcard_hosts
                            .entry(suffix.into())
                            .or_insert_with(TableBuilder::new);
                        add(b, 1 + suffix.len() as u32);
                    }
                    None => {
                        let b = exact_hosts
                            .entry(host.as_str().into())
                            .or_insert_with(TableBuilder::new);
                        add(b, 1 << 16);
                    }
                }
            }
        }
        let mut errors = Vec::new();
        let table = RouteTable {
            exact_hosts: exact_hosts
                .into_iter()
                .map(|(k, b)| (k, b.finish(&mut errors)))
                .collect(),
            wildcard_hosts: wildcard_hosts
                .into_iter()
                .map(|(k, b)| (k, b.finish(&mut errors)))
                .collect(),
            any_host: any.finish(&mut errors),
            len: members.len(),
        };
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// Number of routes in this table.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The best route for a request, or `None` (404).
    pub fn find(&self, req: &RequestView<'_>) -> Option<RouteMatch> {
        let host = req.host.unwrap_or("");
        let exact = req.host.and_then(|h| self.exact_hosts.get(h));
        let suffixes = std::iter::successors(host.find('.').map(|d| &host[d + 1..]), |rest| {
            rest.find('.').map(|d| &rest[d + 1..])
        });
        let wildcards = suffixes
            .take_while(|_| !self.wildcard_hosts.is_empty())
            .filter_map(|suffix| self.wildcard_hosts.get(suffix));
        let tables = exact
            .into_iter()
            .chain(wildcards)
            .chain(std::iter::once(&self.any_host));
        let mut best: Option<(&Candidate, Option<matchit::Params<'_, '_>>)> = None;
        for table in tables {
            if let Some((c, params)) = table.best(req)
                && best.as_ref().is_none_or(|(b, _)| c.rank > b.rank)
            {
                best = Some((c, params));
            }
        }
        let (candidate, params) = best?;
        let params = match params {
            Some(p) => p
                .iter()
                .filter_map(|(k, v)| {
                    let i: usize = k.strip_prefix('p')?.parse().ok()?;
                    Some((candidate.params.get(i)?.clone(), v.to_string()))
                })
                .collect(),
            None => Vec::new(),
        };
        Some(RouteMatch {
            route: candidate.route.clone(),
            params,
        })
    }
}

impl PathTable {
    fn best<'t, 'p>(
        &'t self,
        req: &RequestView<'p>,
    ) -> Option<(&'t Candidate, Option<matchit::Params<'t, 'p>>)> {
        let mut best: Option<(&Candidate, Option<matchit::Params<'t, 'p>>)> = None;
        let mut offer = |c: &'t Candidate, params: Option<matchit::Params<'t, 'p>>| {
            if best.as_ref().is_none_or(|(b, _)| c.rank > b.rank) {
                best = Some((c, params));
            }
        };
        if let Some(list) = self.exact.get(req.path)
            && let Some(c) = first_passing(list, req)
        {
            offer(c, None);
        }
        if let Some(router) = &self.templates
            && let Ok(m) = router.at(req.path)
            && let Some(c) = first_passing(m.value, req)
        {
            offer(c, Some(m.params));
        }
        if !self.prefixes.is_empty() {
            let mut key = req.path.strip_suffix('/').unwrap_or(req.path);
            loop {
                if let Some(list) = self.prefixes.get(key)
                    && let Some(c) = first_passing(list, req)
                {
                    offer(c, None);
                }
                match key.rfind('/') {
                    Some(slash) => key = &key[..slash],
                    None => break,
                }
            }
        }
        best
    }
}

fn first_passing<'t>(list: &'t [Candidate], req: &RequestView<'_>) -> Option<&'t Candidate> {
    list.iter().find(|c| passes(&c.route, req))
}

fn passes(route: &CompiledRoute, req: &RequestView<'_>) -> bool {
    let p = &route.predicates;
    if !p.methods.is_empty() && !p.methods.contains(req.method) {
        return false;
    }
    for h in &p.headers {
        let values = req.headers.get_all(&h.name).iter().map(|v| v.as_bytes());
        if !h.check.matches(values) {
            return false;
        }
    }
    for q in &p.query {
        let query = req.query.unwrap_or("");
        let values: Vec<std::borrow::Cow<'_, str>> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| *k == q.name)
            .map(|(_, v)| v)
            .collect();
        if !q.check.matches(values.iter().map(|v| v.as_bytes())) {
            return false;
        }
    }
    true
}

fn add_candidate(
    builder: &mut TableBuilder,
    route: &Arc<CompiledRoute>,
    host_rank: u32,
    path: &FieldPath,
    pattern: &PathPattern,
) {
    let rank = |path_rank: u32| -> Rank {
        (
            route.priority,
            host_rank,
            path_rank,
            route.predicates.count(),
            Reverse(route.index),
        )
    };
    match pattern {
        PathPattern::Exact(p) => {
            builder
                .exact
                .entry(p.as_str().into())
                .or_default()
                .push(Candidate {
                    rank: rank((3 << 24) + p.len() as u32),
                    route: route.clone(),
                    params: Arc::new([]),
                })
        }
        PathPattern::Prefix(p) => {
            builder
                .prefixes
                .entry(p.as_str().into())
                .or_default()
                .push(Candidate {
                    rank: rank((1 << 24) + p.len() as u32),
                    route: route.clone(),
                    params: Arc::new([]),
                })
        }
        PathPattern::Template {
            normalized,
            params,
            literal_len,
        } => {
            let slot = *builder
                .template_index
                .entry(normalized.clone())
                .or_insert_with(|| {
                    builder
                        .templates
                        .push((normalized.clone(), path.clone(), Vec::new()));
                    builder.templates.len() - 1
                });
            builder.templates[slot].2.push(Candidate {
                rank: rank((2 << 24) + *literal_len as u32),
                route: route.clone(),
                params: params.iter().map(|p| Arc::from(p.as_str())).collect(),
            });
        }
    }
}

#[cfg(test)]
mod tests;

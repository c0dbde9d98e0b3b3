use crate::error::LoadError;
use crate::load::{Format, parse_with_env};
use crate::model::Config;

fn parse(text: &str) -> Result<Config, Vec<String>> {
    parse_with_env(text, Format::Yaml, "t", &|_| None).map_err(|e| match e {
        LoadError::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
        other => vec![format!("other: {other}")],
    })
}

fn problems(text: &str) -> Vec<String> {
    parse(text).err().unwrap_or_default()
}

#[test]
fn two_listeners_on_one_address_are_refused() {
    let p = problems(
        "listeners:\n  - { name: a, address: '127.0.0.1:8080' }\n  - { name: b, address: '127.0.0.1:8080' }\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(
            "listeners[1].address: 127.0.0.1:8080 is already taken by listeners[0].address"
        ),
        "{p:?}"
    );
    // A wildcard covers every address of its family.
    let p = problems(
        "listeners:\n  - { name: a, address: '0.0.0.0:8080' }\n  - { name: b, address: '127.0.0.1:8080' }\n",
    );
    assert!(
        p.len() == 1 && p[0].starts_with("listeners[1].address:"),
        "{p:?}"
    );
    // Port 0 picks a fresh port each time; IPv6 sockets are v6-only; other ports are fine.
    let fine = "listeners:\n  - { name: a, address: '127.0.0.1:0' }\n  - { name: b, address: '127.0.0.1:0' }\n  - { name: c, address: '[::]:8080' }\n  - { name: d, address: '0.0.0.0:8080' }\n  - { name: e, address: '127.0.0.1:8081' }\n";
    assert_eq!(problems(fine), Vec::<String>::new());
}

#[test]
fn the_admin_api_cannot_share_a_listener_address() {
    let p = problems(
        "admin: { address: '127.0.0.1:9000' }\nlisteners: [{ name: a, address: '0.0.0.0:9000' }]\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("admin.address: 127.0.0.1:9000 is already taken by listeners[0].address"),
        "{p:?}"
    );
    let off = "admin: { enabled: false, address: '127.0.0.1:9000' }\nlisteners: [{ name: a, address: '0.0.0.0:9000' }]\n";
    assert_eq!(problems(off), Vec::<String>::new());
}

#[test]
fn unresolvable_static_targets_are_warnings_not_errors() {
    let text = "listeners: [{ name: a, address: '127.0.0.1:0' }]\nupstreams:\n  - { name: u, targets: [{ address: '10.0.0.1:80' }, { address: 'gone.internal:80' }, { address: 'users.internal:8080' }] }\n";
    let config = parse(text).expect("a target that does not resolve is still a valid config");
    let asked = std::cell::RefCell::new(Vec::new());
    let found = super::warnings(&config, &|host, port| {
        asked.borrow_mut().push(format!("{host}:{port}"));
        host == "users.internal"
    });
    assert_eq!(
        asked.into_inner(),
        ["gone.internal:80", "users.internal:8080"],
        "IP targets are not looked up"
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "upstreams[0].targets[1].address");
    assert!(found[0].message.contains("does not resolve"), "{found:?}");
}

//! User-Agent rules: the built-in list of attack tools, configured deny and allow patterns.

use support::BOTH;

use super::{start, yaml};

const ROUTES: &str = "  - { match: { paths: [\"/*\"] }, respond: { status: 200, body: \"ok\" } }\n";

#[tokio::test]
async fn known_attack_tools_are_refused_and_browsers_are_not() {
    let node = start(&yaml("", "", ROUTES, None)).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        for ua in [
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
            "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
            "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
            "Mozilla/5.0 zgrab/0.x",
            "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        ] {
            let r = c.get_with("/", &[("user-agent", ua)]).await;
            assert_eq!(r.status, 403, "{proto:?} {ua}");
            assert_eq!(r.json()["error"]["message"], "user agent is not allowed");
        }
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
            "curl/8.5.0",
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
        ] {
            assert_eq!(
                c.get_with("/", &[("user-agent", ua)]).await.status,
                200,
                "{ua}"
            );
        }
    }
}

#[tokio::test]
async fn configured_patterns_and_allow_overrides() {
    let security = "security:\n  bots: { deny: [\"^python-requests\", \"badbot\"], allow: [\"sqlmap.*internal-audit\"], block_missing: true }\n";
    let node = start(&yaml(security, "", ROUTES, None)).await;
    let c = node.client(support::Proto::Http1, "main");
    assert_eq!(
        c.get_with("/", &[("user-agent", "python-requests/2.31")])
            .await
            .status,
        403
    );
    assert_eq!(
        c.get_with("/", &[("user-agent", "Mozilla/5.0 BadBot/1.0")])
            .await
            .status,
        403
    );
    assert_eq!(
        c.get_with("/", &[("user-agent", "sqlmap/1.7 internal-audit")])
            .await
            .status,
        200,
        "allow wins over the built-in list"
    );
    assert_eq!(c.get("/").await.status, 403, "no User-Agent at all");
}

//! The web console over plain HTTP: sign-in and sessions, CSRF, the role and row-level scope of
//! the key on every page, another organization's URLs, and the customer pages' behaviour that a
//! user depends on (a policy's deny at its field, filter errors at the bad token, Thai names).

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, Server, install_enabled, json_call, serve, urlencode};

/// One answer: status, headers (name lower-case, value), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn cookies(&self) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == "set-cookie").map(|(_, v)| v.as_str()).collect()
    }
}

/// A browser without JavaScript: follows no redirect by itself, sends the cookie it was given.
struct Browser {
    url: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl Browser {
    fn new(s: &Server) -> Browser {
        Browser { url: s.url.clone(), agent: ureq::AgentBuilder::new().redirects(0).build(), cookie: None }
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], form: Option<&[(&str, &str)]>) -> Answer {
        let mut req = self.agent.request(method, &format!("{}{path}", self.url));
        if let Some(c) = &self.cookie {
            req = req.set("Cookie", c);
        }
        for (n, v) in headers {
            req = req.set(n, v);
        }
        let result = match form {
            Some(fields) => req.send_form(fields),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let mut headers = Vec::new();
        for name in resp.headers_names() {
            for v in resp.all(&name) {
                headers.push((name.to_lowercase(), v.to_owned()));
            }
        }
        Answer { status: resp.status(), headers, body: resp.into_string().unwrap() }
    }

    fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], None)
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send("POST", path, &[], Some(form))
    }

    /// Sign in with `token`, keeping the session cookie; panics unless it worked.
    fn sign_in(&mut self, token: &str) {
        let a = self.post("/sign-in", &[("token", token), ("next", "/")]);
        assert_eq!(a.status, 303, "sign-in: {}", a.body);
        let cookie = a.cookies().into_iter().find(|c| c.starts_with("rapport_session=")).expect("a session cookie");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    }

    /// The CSRF token of the forms on `path`.
    fn csrf(&self, path: &str) -> String {
        let page = self.get(path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let at = page.body.find("name=\"_csrf\" value=\"").expect("a form with a CSRF token") + 20;
        page.body[at..].split('"').next().unwrap().to_owned()
    }
}

/// An organization with an owner key; returns the key.
fn org(s: &Server, slug: &str) -> String {
    let (status, out) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": slug, "name": slug}));
    assert_eq!(status, 201, "{out}");
    key(s, slug, json!({"name": "boss", "role": "owner"}))
}

fn key(s: &Server, org: &str, body: Value) -> String {
    let (status, out) = json_call("POST", &format!("{}/v1/orgs/{org}/keys", s.url), ADMIN, body);
    assert_eq!(status, 201, "{out}");
    out["token"].as_str().unwrap().to_owned()
}

fn customer(s: &Server, org: &str, token: &str, body: Value) -> u64 {
    let (status, out) = json_call("POST", &format!("{}/v1/orgs/{org}/customers", s.url), token, body);
    assert_eq!(status, 201, "{out}");
    out["id"].as_u64().unwrap()
}

fn stored(s: &Server, org: &str, token: &str, id: u64) -> Value {
    let (status, out) = json_call("GET", &format!("{}/v1/orgs/{org}/customers/{id}", s.url), token, Value::Null);
    assert_eq!(status, 200, "{out}");
    out
}

#[test]
fn pages_need_a_session_and_a_wrong_key_gets_an_error_and_no_cookie() {
    let s = serve();
    let owner = org(&s, "acme");
    let mut b = Browser::new(&s);

    let a = b.get("/orgs/acme/customers?q=x");
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/sign-in?next=/orgs/acme/customers%3Fq%3Dx"));
    assert_eq!(b.get("/").status, 303);

    let a = b.post("/sign-in", &[("token", "rk_not-a-key")]);
    assert_eq!(a.status, 401);
    assert!(a.body.contains("This key is not valid"), "{}", a.body);
    assert!(a.cookies().is_empty(), "{:?}", a.cookies());
    let a = b.post("/sign-in", &[("token", "  ")]);
    assert_eq!(a.status, 422);
    assert!(a.cookies().is_empty());

    // The session cookie is out of reach of scripts and of other sites' requests.
    let a = b.post("/sign-in", &[("token", &owner), ("next", "/orgs/acme/customers")]);
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/orgs/acme/customers"));
    let cookie = a.cookies()[0].to_owned();
    assert!(cookie.starts_with("rapport_session=rs_"), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP cannot carry a Secure cookie: {cookie}");
    let tls = b.send("POST", "/sign-in", &[("X-Forwarded-Proto", "https")], Some(&[("token", &owner)]));
    assert!(tls.cookies()[0].contains("Secure"), "{:?}", tls.cookies());

    // `next` never leads off the site.
    let a = b.post("/sign-in", &[("token", &owner), ("next", "//evil.example/")]);
    assert_eq!(a.header("location"), Some("/"));

    b.sign_in(&owner);
    let a = b.get("/orgs/acme/customers");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
}

#[test]
fn signing_out_or_revoking_the_key_ends_the_session() {
    let s = serve();
    let owner = org(&s, "acme");
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let csrf = b.csrf("/orgs/acme");
    let a = b.post("/sign-out", &[("_csrf", &csrf)]);
    assert_eq!(a.status, 303);
    assert!(a.cookies()[0].starts_with("rapport_session=;"), "{:?}", a.cookies());
    // The old cookie, replayed, is no longer a session.
    let a = b.get("/orgs/acme");
    assert_eq!(a.status, 303, "{}", a.body);

    // A key revoked over the API stops working in the console at the next request.
    let temp = key(&s, "acme", json!({"name": "temp", "role": "manager"}));
    b.sign_in(&temp);
    assert_eq!(b.get("/orgs/acme").status, 200);
    let (_, keys) = json_call("GET", &format!("{}/v1/orgs/acme/keys", s.url), &owner, Value::Null);
    let id = keys["items"].as_array().unwrap().iter().find(|k| k["name"] == "temp").unwrap()["id"].clone();
    let (status, out) = json_call("DELETE", &format!("{}/v1/orgs/acme/keys/{id}", s.url), &owner, Value::Null);
    assert!(status == 204 || status == 200, "{status} {out}");
    assert_eq!(b.get("/orgs/acme").status, 303);
}

#[test]
fn a_post_without_the_right_csrf_token_is_refused_and_changes_nothing() {
    let s = serve();
    let owner = org(&s, "acme");
    let id = customer(&s, "acme", &owner, json!({"name": "Somchai", "email": "somchai@example.com"}));
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let edit = format!("/orgs/acme/customers/{id}/edit");
    let token = b.csrf(&edit);

    let fields = |csrf: Option<&str>| {
        let mut f = vec![("name", "Mallory"), ("email", "somchai@example.com")];
        if let Some(c) = csrf {
            f.push(("_csrf", c));
        }
        f.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
    };
    let send = |b: &Browser, path: &str, headers: &[(&str, &str)], f: &[(String, String)]| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        b.send("POST", path, headers, Some(&f))
    };
    for (what, answer) in [
        ("no token", send(&b, &edit, &[], &fields(None))),
        ("a wrong token", send(&b, &edit, &[], &fields(Some("csrf_wrong")))),
        ("a wrong htmx header", send(&b, &edit, &[("X-CSRF-Token", "csrf_wrong")], &fields(Some(&token)))),
        ("a wrong query token", send(&b, &format!("{edit}?_csrf=nope"), &[], &fields(None))),
    ] {
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        assert!(answer.body.contains("Reload the page"), "{what}: {}", answer.body);
    }
    let erase = format!("/orgs/acme/customers/{id}/erase");
    assert_eq!(b.post(&erase, &[("confirm", &id.to_string())]).status, 403);
    assert_eq!(b.post("/sign-out", &[]).status, 403);
    // Nothing changed, and the session is still there.
    assert_eq!(stored(&s, "acme", &owner, id)["name"], "Somchai");
    assert_eq!(b.get("/orgs/acme").status, 200);

    // Another session's token is no better than none.
    let mut other = Browser::new(&s);
    other.sign_in(&owner);
    let theirs = other.csrf("/orgs/acme");
    assert_eq!(send(&b, &edit, &[], &fields(Some(&theirs))).status, 403);

    // The right token goes through, as a form field or as htmx's header.
    let a = send(&b, &edit, &[], &fields(Some(&token)));
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(stored(&s, "acme", &owner, id)["name"], "Mallory");
    let f = vec![("name".to_owned(), "Somchai".to_owned()), ("email".to_owned(), "somchai@example.com".to_owned())];
    assert_eq!(send(&b, &edit, &[("X-CSRF-Token", &token)], &f).status, 303);
    assert_eq!(stored(&s, "acme", &owner, id)["name"], "Somchai");
}

#[test]
fn an_agent_sees_only_its_scope_and_another_organizations_urls_are_the_404_page() {
    let s = serve();
    let owner = org(&s, "acme");
    let mine = customer(&s, "acme", &owner, json!({"name": "Anan Bangkok", "email": "a@x.th", "branch": "BKK"}));
    let theirs = customer(&s, "acme", &owner, json!({"name": "Boonmee Chiangmai", "email": "b@x.th", "branch": "CNX"}));
    let agent = key(&s, "acme", json!({"name": "bkk-agent", "role": "agent", "branch": "BKK"}));
    let rival = org(&s, "globex");
    let secret = customer(&s, "globex", &rival, json!({"name": "Globex Secret", "email": "s@globex.com"}));

    let mut b = Browser::new(&s);
    b.sign_in(&agent);
    let list = b.get("/orgs/acme/customers");
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Anan Bangkok"), "{}", list.body);
    assert!(!list.body.contains("Boonmee"), "an agent of BKK sees a CNX customer: {}", list.body);
    // A filter cannot widen the scope.
    let widened = b.get("/orgs/acme/customers?q=branch+%3D+%22CNX%22+or+id+%3E+0");
    assert!(!widened.body.contains("Boonmee"), "{}", widened.body);

    assert_eq!(b.get(&format!("/orgs/acme/customers/{mine}")).status, 200);
    for path in [
        format!("/orgs/acme/customers/{theirs}"),
        format!("/orgs/acme/customers/{theirs}/edit"),
        format!("/orgs/globex/customers/{secret}"),
        "/orgs/globex".to_owned(),
        "/orgs/globex/customers".to_owned(),
        "/orgs/globex/audit".to_owned(),
        "/orgs/nowhere".to_owned(),
    ] {
        let a = b.get(&path);
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert!(a.body.contains("Page not found"), "{path}: {}", a.body);
        assert!(!a.body.contains("Boonmee") && !a.body.contains("Globex Secret"), "{path} shows data: {}", a.body);
    }
    // A write to a customer outside the scope is refused as not found, and changes nothing.
    let csrf = b.csrf(&format!("/orgs/acme/customers/{mine}/edit"));
    let a = b.post(&format!("/orgs/acme/customers/{theirs}/edit"), &[("_csrf", &csrf), ("name", "Hijacked")]);
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(stored(&s, "acme", &owner, theirs)["name"], "Boonmee Chiangmai");
    // The agent's role does not reach the audit log (managers and owners only).
    assert_eq!(b.get("/orgs/acme/audit").status, 403);

    // The owner of the other organization gets the same 404 for acme's pages.
    let mut r = Browser::new(&s);
    r.sign_in(&rival);
    let a = r.get(&format!("/orgs/acme/customers/{mine}"));
    assert_eq!(a.status, 404);
    assert!(!a.body.contains("Anan"), "{}", a.body);
    // Unknown pages are the console's 404 page; unknown API routes stay problem+json.
    let a = r.get("/no/such/page");
    assert_eq!((a.status, a.header("content-type").unwrap().starts_with("text/html")), (404, true));
    let a = r.get("/v1/no-such-route");
    assert_eq!(a.status, 404);
    assert!(a.header("content-type").unwrap().starts_with("application/problem+json"));
}

#[test]
fn an_edit_denied_by_a_policy_shows_the_reason_at_its_field_and_a_warning_as_a_warning() {
    let s = serve();
    let owner = org(&s, "acme");
    install_enabled(&s, "acme", &owner, "require-contact", built::REQUIRE_CONTACT);
    let id = customer(&s, "acme", &owner, json!({"name": "Somchai", "email": "somchai@example.com"}));
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let edit = format!("/orgs/acme/customers/{id}/edit");
    let csrf = b.csrf(&edit);

    let a = b.post(&edit, &[("_csrf", &csrf), ("name", "Somchai Jaidee"), ("email", ""), ("phone", "")]);
    assert_eq!(a.status, 422, "{}", a.body);
    // The reason sits under the email field, which is marked invalid; what was typed is kept.
    let at = a.body.find("id=\"email-error\"").expect("an error next to the email field");
    assert!(a.body[at..].contains("needs an email or a phone number"), "{}", a.body);
    assert!(a.body[at..].contains("require-contact"), "{}", a.body);
    assert!(a.body.contains("aria-describedby=\"email-error\""), "{}", a.body);
    assert!(a.body.contains("value=\"Somchai Jaidee\""), "{}", a.body);
    assert_eq!(stored(&s, "acme", &owner, id)["name"], "Somchai");

    // A warning does not stop the write. The answer is a redirect to the profile (a reload does
    // not send the form again), which shows the warning as a warning, once.
    let a = b.post(&edit, &[("_csrf", &csrf), ("name", ""), ("email", "somchai@example.com")]);
    assert_eq!(a.status, 303, "{}", a.body);
    let profile = format!("/orgs/acme/customers/{id}");
    assert_eq!(a.header("location"), Some(profile.as_str()));
    assert_eq!(stored(&s, "acme", &owner, id)["name"], Value::Null);
    let shown = b.get(&profile);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("class=\"warning\""), "{}", shown.body);
    assert!(shown.body.contains("the customer has no name") && shown.body.contains("Saved."), "{}", shown.body);
    let reloaded = b.get(&profile);
    assert!(!reloaded.body.contains("the customer has no name"), "shown twice: {}", reloaded.body);
    assert!(!reloaded.body.contains("Saved."), "shown twice: {}", reloaded.body);

    // A stale form (someone changed the customer since) says so instead of overwriting.
    let stale = b.csrf(&edit);
    let page = b.get(&edit).body;
    let at = page.find("name=\"etag\" value=\"").unwrap() + 19;
    let etag = page[at..].split('"').next().unwrap().replace("&quot;", "\"");
    let (status, out) = json_call(
        "PUT",
        &format!("{}/v1/orgs/acme/customers/{id}", s.url),
        &owner,
        json!({"name": "Changed elsewhere", "email": "somchai@example.com"}),
    );
    assert_eq!(status, 200, "{out}");
    let a = b.post(&edit, &[("_csrf", &stale), ("etag", &etag), ("name", "Mine"), ("email", "somchai@example.com")]);
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("Someone changed this customer"), "{}", a.body);
    assert_eq!(stored(&s, "acme", &owner, id)["name"], "Changed elsewhere");
}

#[test]
fn a_bad_filter_is_shown_at_its_token_and_thai_names_are_found_by_any_part() {
    let s = serve();
    let owner = org(&s, "acme");
    customer(&s, "acme", &owner, json!({"name": "สมชาย ใจดี", "email": "somchai@example.com"}));
    customer(&s, "acme", &owner, json!({"name": "Suda", "email": "suda@example.com"}));
    let mut b = Browser::new(&s);
    b.sign_in(&owner);

    let a = b.get("/orgs/acme/customers?q=name+~+%22x%22+and+colour+%3D+1");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("unknown field"), "{}", a.body);
    assert!(a.body.contains("<mark>colour</mark>"), "{}", a.body);
    assert!(a.body.contains("aria-invalid=\"true\""), "{}", a.body);
    // `?filter=`, as the API names it, is the same search.
    let a = b.get("/orgs/acme/customers?filter=name+~+%22SUDA%22");
    assert!(a.body.contains(">Suda<") && !a.body.contains("ใจดี"), "{}", a.body);

    customer(&s, "acme", &owner, json!({"name": "แก้ว สมศักดิ์", "email": "kaew@example.com"}));
    // Thai is written without spaces between words: a part of a name finds it; and tone marks,
    // often left out or typed in another order, do not stand in the way.
    for (part, name) in [("ใจดี", "สมชาย ใจดี"), ("มชา", "สมชาย ใจดี"), ("แกว", "แก้ว สมศักดิ์"), ("สมศักดิ", "แก้ว สมศักดิ์")]
    {
        let q = format!("/orgs/acme/customers?q={}", urlencode(&format!("name ~ \"{part}\"")));
        let a = b.get(&q);
        assert!(a.body.contains(name), "{part}: {}", a.body);
        assert!(!a.body.contains("Suda"), "{part}: {}", a.body);
    }
}

#[test]
fn the_profile_merge_export_and_erase_with_its_confirmation() {
    let s = serve();
    let owner = org(&s, "acme");
    let keep = customer(&s, "acme", &owner, json!({"name": "Mali", "email": "mali@example.com", "tags": ["vip"]}));
    let dup = customer(&s, "acme", &owner, json!({"name": "Mali S.", "phone": "+66811111111"}));
    let (status, out) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/interactions", s.url),
        &owner,
        json!({"customer": dup, "kind": "purchase", "occurred_at": 1_790_000_000_000i64,
               "amount": {"amount_minor": 123_450, "currency": "THB"}, "subject": "Rice cooker"}),
    );
    assert_eq!(status, 201, "{out}");
    let mut b = Browser::new(&s);
    b.sign_in(&owner);

    let csrf = b.csrf(&format!("/orgs/acme/customers/{keep}"));
    let a = b.post(&format!("/orgs/acme/customers/{keep}/merge"), &[("_csrf", &csrf), ("remove", &dup.to_string())]);
    // A redirect to the kept profile: a reload shows it instead of merging again.
    assert_eq!(a.status, 303, "{}", a.body);
    let profile = format!("/orgs/acme/customers/{keep}");
    assert_eq!(a.header("location"), Some(profile.as_str()));
    let a = b.get(&profile);
    assert!(a.body.contains("Merged."), "{}", a.body);
    // The duplicate's purchase is on the kept profile's timeline, its amount in baht.
    assert!(a.body.contains("Rice cooker") && a.body.contains("฿1,234.50"), "{}", a.body);
    assert!(!b.get(&profile).body.contains("Merged."), "the notice is shown once");
    assert_eq!(b.get(&format!("/orgs/acme/customers/{dup}")).status, 404);

    let a = b.get(&format!("/orgs/acme/customers/{keep}/export"));
    assert_eq!(a.status, 200);
    assert!(a.header("content-disposition").unwrap().contains("attachment"));
    let doc: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["customer"]["name"], "Mali", "{doc}");

    let erase = format!("/orgs/acme/customers/{keep}/erase");
    let a = b.post(&erase, &[("_csrf", &csrf), ("confirm", &(keep + 1000).to_string())]);
    assert_eq!(a.status, 422, "a wrong confirmation erases nothing: {}", a.body);
    assert_eq!(stored(&s, "acme", &owner, keep)["name"], "Mali");
    let a = b.post(&erase, &[("_csrf", &csrf), ("confirm", &keep.to_string())]);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_ne!(stored(&s, "acme", &owner, keep)["name"], "Mali");
}

#[test]
fn thai_and_english_labels_dates_in_the_buddhist_era_and_the_embedded_assets() {
    let s = serve();
    let owner = org(&s, "acme");
    customer(&s, "acme", &owner, json!({"name": "Ploy", "email": "ploy@example.com"}));
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let en = b.get("/orgs/acme/customers");
    assert!(en.body.contains("<html lang=\"en\"") && en.body.contains(">Customers<"), "{}", en.body);
    // No script but the server's own, and no framing by another site.
    let csp = en.header("content-security-policy").expect("a content security policy");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!en.body.contains("<script>") && !en.body.contains(" onclick="), "inline script: {}", en.body);
    let th = b.send("GET", "/orgs/acme/customers", &[("Accept-Language", "th-TH,th;q=0.9,en;q=0.5")], None);
    assert!(th.body.contains("<html lang=\"th\"") && th.body.contains(">ลูกค้า<"), "{}", th.body);
    // The switch is a cookie that wins over the browser's preference.
    let a = b.get("/prefs?lang=th&back=/orgs/acme/audit");
    assert_eq!(a.header("location"), Some("/orgs/acme/audit"));
    assert!(a.cookies()[0].starts_with("rapport_lang=th"), "{:?}", a.cookies());
    let cookie = format!("{}; rapport_lang=th", b.cookie.as_deref().unwrap());
    let audit = b.send("GET", "/orgs/acme/audit", &[("Cookie", &cookie)], None);
    // The customer's creation is in the log, its year in the Buddhist Era after a Thai month.
    let year = time::OffsetDateTime::now_utc().year() + 543;
    assert!(audit.body.contains(&format!(". {year} ")), "{}", audit.body);
    assert!(audit.body.contains("บันทึกการตรวจสอบ"), "{}", audit.body);

    // Every asset the page names is served from the binary, cacheable, and under 100 KB in all.
    let mut total = 0;
    for src in attribute_values(&en.body, "src=\"").into_iter().chain(attribute_values(&en.body, "href=\"/assets/")) {
        let path = if src.starts_with('/') { src } else { format!("/assets/{src}") };
        let a = b.get(&path);
        assert_eq!(a.status, 200, "{path}");
        assert!(a.header("cache-control").unwrap().contains("immutable"), "{path}");
        total += a.body.len();
    }
    assert!(total > 10_000 && total < 100_000, "{total} bytes of assets");
}

fn attribute_values(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| html[i + prefix.len()..].split('"').next().unwrap().to_owned())
        .filter(|v| v.starts_with("/assets/") || !v.starts_with('/'))
        .collect()
}

#[test]
fn the_dashboard_counts_within_the_scope_and_shows_owners_the_latest_denials() {
    let s = serve();
    let owner = org(&s, "acme");
    install_enabled(&s, "acme", &owner, "require-contact", built::REQUIRE_CONTACT);
    let bkk = customer(&s, "acme", &owner, json!({"name": "Anan", "email": "a@x.th", "branch": "BKK"}));
    customer(&s, "acme", &owner, json!({"name": "Boonmee", "email": "b@x.th", "branch": "CNX"}));
    // One ticket past its due time (September 2026), one due in 2096.
    for (subject, due) in [("Broken fan", 1_790_000_100_000i64), ("Late delivery", 4_000_000_000_000)] {
        let (status, out) = json_call(
            "POST",
            &format!("{}/v1/orgs/acme/interactions", s.url),
            &owner,
            json!({"customer": bkk, "kind": "ticket", "occurred_at": 1_790_000_000_000i64, "subject": subject,
                   "ticket": {"status": "open", "due_at": due}}),
        );
        assert_eq!(status, 201, "{out}");
    }
    // One touch this week (the tickets above are from September 2026).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let (status, out) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/interactions", s.url),
        &owner,
        json!({"customer": bkk, "kind": "call", "channel": "phone", "occurred_at": now}),
    );
    assert_eq!(status, 201, "{out}");
    let (status, _) =
        json_call("POST", &format!("{}/v1/orgs/acme/customers", s.url), &owner, json!({"name": "Nobody"}));
    assert_eq!(status, 422);

    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    // A segment saved from the search page (a manager's right) is listed with its size.
    let csrf = b.csrf("/orgs/acme/customers?q=tickets.open+%3E+0");
    let a = b.post(
        "/orgs/acme/customers/segments",
        &[("_csrf", &csrf), ("name", "needs-care"), ("filter", "tickets.open > 0"), ("description", "")],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/orgs/acme/customers?segment=needs-care"));
    let a = b.get("/orgs/acme/customers?segment=needs-care");
    assert!(a.body.contains("Segment saved") && a.body.contains("Anan") && !a.body.contains("Boonmee"), "{}", a.body);
    let a = b.post("/orgs/acme/customers/segments", &[("_csrf", &csrf), ("name", "bad"), ("filter", "tickets.open >")]);
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("id=\"q-error\""), "the filter's error at the filter: {}", a.body);
    let (_, segments) = json_call("GET", &format!("{}/v1/orgs/acme/segments", s.url), &owner, Value::Null);
    assert_eq!(segments["items"].as_array().unwrap().len(), 1, "{segments}");

    let d = b.get("/orgs/acme");
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(d.body.contains("<div class=\"big\">2</div>"), "two customers: {}", d.body);
    let this_week = |n: u64| format!("Interactions in the last 7 days</div><div class=\"big\">{n}</div>");
    assert!(d.body.contains(&this_week(1)), "one interaction this week: {}", d.body);
    assert!(
        d.body.contains("<td>BKK</td><td class=\"num\">2</td><td class=\"num\"><span class=\"error\">1</span></td>"),
        "two open tickets in BKK, one overdue: {}",
        d.body
    );
    assert!(d.body.contains(">needs-care</a>") && d.body.contains("<svg"), "{}", d.body);
    assert!(d.body.contains("needs an email or a phone number"), "the latest denial: {}", d.body);

    // An agent of CNX counts only CNX, and does not read the plugins' traces.
    let agent = key(&s, "acme", json!({"name": "cnx", "role": "agent", "branch": "CNX"}));
    let mut a = Browser::new(&s);
    a.sign_in(&agent);
    let d = a.get("/orgs/acme");
    assert!(d.body.contains("<div class=\"big\">1</div>"), "{}", d.body);
    assert!(!d.body.contains("<td>BKK</td>"), "{}", d.body);
    assert!(d.body.contains(&this_week(0)), "BKK's call is outside CNX's scope: {}", d.body);
    assert!(!d.body.contains("needs an email or a phone number"), "{}", d.body);
}

#[test]
fn the_audit_log_filters_by_who_what_and_when() {
    let s = serve();
    let owner = org(&s, "acme");
    let alice = key(&s, "acme", json!({"name": "alice", "role": "manager"}));
    let bob = key(&s, "acme", json!({"name": "bob", "role": "agent"}));
    customer(&s, "acme", &alice, json!({"name": "From Alice", "email": "fa@x.th"}));
    customer(&s, "acme", &bob, json!({"name": "From Bob", "email": "fb@x.th"}));
    let mut b = Browser::new(&s);
    b.sign_in(&owner);

    let all = b.get("/orgs/acme/audit");
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("From Alice") && all.body.contains("From Bob"), "{}", all.body);
    let a = b.get("/orgs/acme/audit?who=ali");
    assert!(a.body.contains("From Alice") && !a.body.contains("From Bob"), "{}", a.body);
    let a = b.get("/orgs/acme/audit?who=bob&what=customer");
    assert!(a.body.contains("From Bob") && !a.body.contains("From Alice"), "{}", a.body);
    let a = b.get("/orgs/acme/audit?what=plugin");
    assert!(!a.body.contains("From Bob") && a.body.contains("No entry matches"), "{}", a.body);
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1)).date();
    let a = b.get(&format!("/orgs/acme/audit?from={tomorrow}"));
    assert!(a.body.contains("No entry matches"), "{}", a.body);
    let a = b.get(&format!("/orgs/acme/audit?to={tomorrow}&who=alice"));
    assert!(a.body.contains("From Alice"), "{}", a.body);
    let a = b.get("/orgs/acme/audit?from=last+tuesday");
    assert_eq!(a.status, 400);
    assert!(a.body.contains("2026-11-23"), "the error shows the date format: {}", a.body);
}

#[test]
fn the_customer_list_pages_through_every_match_once() {
    let s = serve();
    let owner = org(&s, "acme");
    for i in 0..30 {
        customer(&s, "acme", &owner, json!({"name": format!("Person {i:02}"), "email": format!("p{i}@x.th")}));
    }
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let mut seen = Vec::new();
    let mut path = "/orgs/acme/customers?q=email+~+%22x.th%22".to_owned();
    loop {
        let a = b.get(&path);
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("<strong>30</strong>"), "the total is shown on every page: {}", a.body);
        seen.extend(a.body.match_indices(">Person ").map(|(i, _)| a.body[i + 8..i + 10].to_owned()));
        let Some(at) = a.body.find("rel=\"next\"") else { break };
        let href = a.body[..at].rsplit("href=\"").next().unwrap().split('"').next().unwrap();
        path = href.replace("&amp;", "&");
    }
    let expected: Vec<String> = (0..30).map(|i| format!("{i:02}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn after_sign_in_or_a_language_switch_the_user_stays_on_this_site() {
    let s = serve();
    let owner = org(&s, "acme");
    let b = Browser::new(&s);
    // Browsers drop a tab or a line break inside a URL: `/<TAB>/evil.example` is `//evil.example`,
    // another site. A space is no part of a path of ours either.
    for bad in ["/%09/evil.example", "/%0A/x", "/%20/x", "/%0D%0A/x", "/%5C/evil.example", "//evil.example"] {
        let a = b.get(&format!("/prefs?lang=th&back={bad}"));
        assert_eq!((a.status, a.header("location")), (303, Some("/")), "back={bad}: {}", a.body);
        let decoded = bad.replace("%09", "\t").replace("%0A", "\n").replace("%20", " ").replace("%0D", "\r");
        let decoded = decoded.replace("%5C", "\\");
        let a = b.post("/sign-in", &[("token", &owner), ("next", &decoded)]);
        assert_eq!((a.status, a.header("location")), (303, Some("/")), "next={bad:?}: {}", a.body);
        let form = b.get(&format!("/sign-in?next={bad}"));
        assert_eq!(form.status, 200);
        assert!(form.body.contains("name=\"next\" value=\"/\""), "next={bad}: {}", form.body);
    }
    // A path of this site is kept.
    let a = b.post("/sign-in", &[("token", &owner), ("next", "/orgs/acme/audit?who=x")]);
    assert_eq!(a.header("location"), Some("/orgs/acme/audit?who=x"));
}

#[test]
fn an_htmx_request_without_a_session_sends_the_whole_page_to_sign_in() {
    let s = serve();
    let owner = org(&s, "acme");
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let csrf = b.csrf("/orgs/acme");
    assert_eq!(b.post("/sign-out", &[("_csrf", &csrf)]).status, 303);

    // The live search of a page whose session has ended: htmx would follow a redirect silently
    // and swap an empty result in; `HX-Redirect` makes it load the sign-in page instead.
    let search = "/orgs/acme/customers?q=name";
    let a = b.send("GET", search, &[("HX-Request", "true")], None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("hx-redirect"), Some("/sign-in?next=/orgs/acme/customers%3Fq%3Dname"));
    assert_eq!(a.header("location"), None);
    // An htmx POST too.
    let a = b.send("POST", "/orgs/acme/customers/segments", &[("HX-Request", "true"), ("X-CSRF-Token", &csrf)], None);
    assert_eq!((a.status, a.header("hx-redirect"), a.header("location")), (200, Some("/sign-in"), None));
    // A plain request is redirected as before.
    let a = b.get(search);
    assert_eq!((a.status, a.header("hx-redirect")), (303, None));
    assert_eq!(a.header("location"), Some("/sign-in?next=/orgs/acme/customers%3Fq%3Dname"));
}

#[test]
fn the_audit_log_opens_at_the_latest_entries_and_pages_back() {
    let s = serve();
    let owner = org(&s, "acme");
    for i in 0..110 {
        customer(&s, "acme", &owner, json!({"name": format!("Person {i:03}"), "email": format!("p{i}@x.th")}));
    }
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let first = b.get("/orgs/acme/audit");
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body.contains("Person 109"), "the latest entry is on the first page: {}", first.body);
    assert!(!first.body.contains("Person 000"), "{}", first.body);
    let (latest, earlier) = (first.body.find("Person 109").unwrap(), first.body.find("Person 108").unwrap());
    assert!(latest < earlier, "newest first");

    let at = first.body.find("rel=\"next\"").expect("a link to older entries");
    let href = first.body[..at].rsplit("href=\"").next().unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let older = b.get(&href);
    assert_eq!(older.status, 200, "{}", older.body);
    assert!(older.body.contains("Person 000") && !older.body.contains("Person 109"), "{}", older.body);
    assert!(older.body.contains("Latest entries"), "{}", older.body);
}

#[test]
fn saving_a_segment_keeps_what_was_typed_and_asks_before_replacing_one() {
    let s = serve();
    let owner = org(&s, "acme");
    customer(&s, "acme", &owner, json!({"name": "Anan", "email": "a@x.th", "branch": "BKK"}));
    let mut b = Browser::new(&s);
    b.sign_in(&owner);
    let csrf = b.csrf("/orgs/acme/customers?q=branch+%3D+%22BKK%22");
    let save = |name: &str, filter: &str, replace: bool| {
        let mut f =
            vec![("_csrf", csrf.as_str()), ("name", name), ("filter", filter), ("description", "Bangkok people")];
        if replace {
            f.push(("replace", "1"));
        }
        b.post("/orgs/acme/customers/segments", &f)
    };
    let segments = || {
        let (_, out) = json_call("GET", &format!("{}/v1/orgs/acme/segments", s.url), &owner, Value::Null);
        out["items"].as_array().unwrap().iter().map(|s| (s["name"].clone(), s["filter"].clone())).collect::<Vec<_>>()
    };

    // No name: the search page again, the message at the name, the description and filter kept.
    let a = save("  ", "branch = \"BKK\"", false);
    assert_eq!(a.status, 422, "{}", a.body);
    let at = a.body.find("id=\"seg-name-error\"").expect("an error next to the name");
    assert!(a.body[at..].contains("Give the segment a name"), "{}", a.body);
    assert!(a.body.contains("aria-describedby=\"seg-name-error\""), "{}", a.body);
    assert!(a.body.contains("value=\"Bangkok people\""), "{}", a.body);
    assert!(a.body.contains("id=\"q\" name=\"q\" type=\"search\" value=\"branch = &quot;BKK&quot;\""), "{}", a.body);
    assert!(a.body.contains("Anan"), "the filter's matches are shown: {}", a.body);
    assert!(segments().is_empty());

    assert_eq!(save("bangkok", "branch = \"BKK\"", false).status, 303);
    // The same name again is refused unless "replace" is ticked; the first one is untouched.
    let a = save("bangkok", "branch = \"CNX\"", false);
    assert_eq!(a.status, 422, "{}", a.body);
    let at = a.body.find("id=\"seg-name-error\"").expect("an error next to the name");
    assert!(a.body[at..].contains("exists already"), "{}", a.body);
    assert!(a.body.contains("value=\"bangkok\""), "{}", a.body);
    assert_eq!(segments(), vec![(json!("bangkok"), json!("branch = \"BKK\""))]);
    let a = save("bangkok", "branch = \"CNX\"", true);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(segments(), vec![(json!("bangkok"), json!("branch = \"CNX\""))]);
}

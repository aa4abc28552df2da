"""Every state-changing route refuses a request without a CSRF token."""

from .support import make_user, sign_in

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Z-API authenticates with the secret in the URL and sends no cookie.
EXEMPT = {"webhooks.receive"}


def test_every_state_changing_route_checks_csrf(app, client):
    make_user("ana")
    sign_in(client, "ana")
    checked = []
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) & STATE_CHANGING
        if not methods or rule.endpoint in EXEMPT:
            continue
        arguments = {name: 1 for name in rule.arguments}
        path = rule.build(arguments, append_unknown=False)[1]
        for method in methods:
            response = client.open(path, method=method, data={})
            assert response.status_code == 400, f"{method} {rule.rule} accepted no CSRF token"
            assert "The form expired" in response.get_data(as_text=True)
            checked.append(rule.endpoint)
    # The walk must have found the forms, or it proves nothing.
    assert {"auth.login", "auth.logout", "users.index", "account.change_password"} <= set(checked)


def test_sign_in_without_csrf_token_is_refused(app, client):
    make_user("ana")
    response = client.post("/login", data={"username": "ana", "password": "correct horse battery"})
    assert response.status_code == 400

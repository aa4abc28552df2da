def test_the_icon_is_served_to_anybody_at_the_address_browsers_ask(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype in {"image/vnd.microsoft.icon", "image/x-icon"}
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert "max-age=86400" in response.headers["Cache-Control"]


def test_every_page_names_the_icon(client):
    assert '<link rel="icon" href="/favicon.ico">' in client.get("/login").get_data(as_text=True)

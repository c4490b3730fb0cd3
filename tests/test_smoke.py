from tests.conftest import PASSWORD


def test_login_and_post(client, auth):
    response = auth.login()
    assert response.status_code == 302
    response = client.submit("/index", {"post": "hello world"}, follow_redirects=True)
    assert "hello world" in response.get_data(as_text=True)
    assert PASSWORD

"""--auth and --auth-file: a shared deployment asks for a login before the page or the API answers."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client

from engine.registry import PipelineRegistry
from ui.app import auth_pairs, build_app


def test_auth_file_lines_and_the_flag_become_logins(make_settings, tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("# team\nbob:hunter2\n\n  carol:pa:ss  \n", encoding="utf-8")
    settings = make_settings(auth="alice:s3cret", auth_file=str(logins))
    assert auth_pairs(settings) == [("alice", "s3cret"), ("bob", "hunter2"), ("carol", "pa:ss")]
    assert auth_pairs(make_settings()) is None


@pytest.mark.parametrize("entry", ["alice", "alice:", ":s3cret"])
def test_a_malformed_login_stops_the_start_with_a_clear_message(make_settings, entry):
    with pytest.raises(SystemExit, match="auth entries must look like user:password"):
        auth_pairs(make_settings(auth=entry))


def test_the_page_and_the_api_need_the_login(make_settings, serve, tiny_model):
    settings = make_settings(auth="alice:s3cret", zero_shot_model=str(tiny_model("bert_nli")))
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)

    assert "auth_required" in httpx.get(url, timeout=30).text  # the page shows the login form
    for path in ("config", "gradio_api/info"):  # the app's layout and its API stay closed
        closed = httpx.get(f"{url}{path}", timeout=30)
        assert closed.status_code == 401 and "Not authenticated" in closed.text
    with httpx.Client() as browser:
        assert httpx.post(f"{url}login", data={"username": "alice", "password": "nope"}).status_code == 400
        assert browser.post(f"{url}login", data={"username": "alice", "password": "s3cret"}).json()["success"]
        assert "components" in browser.get(f"{url}config", timeout=30).text
    with pytest.raises(Exception):
        Client(url, verbose=False)  # no credentials: the API is closed too
    with pytest.raises(Exception):
        Client(url, auth=("alice", "wrong"), verbose=False)

    client = Client(url, auth=("alice", "s3cret"), verbose=False)
    result = client.predict("my phone is broken", "urgent, not urgent", api_name="/classify_text")
    assert sorted(result["labels"]) == ["not urgent", "urgent"]

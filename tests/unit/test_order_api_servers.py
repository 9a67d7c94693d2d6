"""ORDER_API_SERVER picks the order API's HTTP server; anything else refuses to start."""

from __future__ import annotations

import pytest

from order_api.servers import DEFAULT_SERVER, SERVERS, server_from_env


@pytest.mark.parametrize("value", ["uvicorn", "granian", " Granian "])
def test_a_known_server_is_chosen(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ORDER_API_SERVER", value)
    assert server_from_env() == value.strip().lower()


def test_without_the_setting_the_default_server_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDER_API_SERVER", raising=False)
    assert server_from_env() == DEFAULT_SERVER in SERVERS


def test_an_unknown_server_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_SERVER", "gunicorn")
    with pytest.raises(SystemExit, match="ORDER_API_SERVER='gunicorn' is not one of"):
        server_from_env()



def test_the_listen_backlog_and_loop_settings_reach_uvicorn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import order_api.__main__ as entry

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(entry, "configure_logging", lambda settings: None)
    monkeypatch.setattr("sys.argv", ["order_api"])
    monkeypatch.setenv("ALLOW_DEV_SECRETS", "true")
    monkeypatch.setenv("ORDER_API_WORKERS", "1")
    monkeypatch.setenv("ORDER_API_SERVER", "uvicorn")
    monkeypatch.setenv("ORDER_API_BACKLOG", "16384")
    entry.main()
    assert seen["backlog"] == 16384
    loops = [seen["loop"]]  # the default: asyncio (uvloop starves new connections)
    monkeypatch.setenv("ORDER_API_LOOP", "uvloop")
    entry.main()
    assert [*loops, seen["loop"]] == ["asyncio", "uvloop"]

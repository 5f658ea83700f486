"""The app the web tests run in real ``backbeat worker`` / ``backbeat run`` processes."""

from backbeat import App

app = App()


@app.task(name="web.ok")
def ok(n: int) -> int:
    return n


@app.task(name="web.fail", retries=0)
def fail(n: int) -> None:
    raise RuntimeError(f"boom {n}")

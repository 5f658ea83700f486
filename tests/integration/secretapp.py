"""The talk's example with a secret: ``account.linked`` carries the user's Twitter token,
its handler starts a recurring poll per user with the token as an argument."""

from backbeat import App, Event

app = App()
polled: list[tuple[int, str]] = []


@app.task(name="twitter.poll", secret=("token",), retries=0)
def poll_twitter(user_id: int, token: str) -> None:
    if user_id == 0:
        raise PermissionError(f"twitter refused token {token}")
    polled.append((user_id, token))


@app.on("account.linked", secret=("token",))
def start_polling(event: Event) -> None:
    user_id = event.payload["user_id"]
    app.every(20, poll_twitter, key=f"twitter:{user_id}", kwargs={"user_id": user_id, "token": event.payload["token"]})

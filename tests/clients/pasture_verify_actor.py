"""fediverse-pasture's verify_actor app on PASTURE_HOST:PASTURE_PORT (plain http).

Runs in .venv-pasture. POST / with `actor_uri` and `Accept: application/json` makes it fetch
that actor and post to its inbox as each of its test actors, and check the actor's WebFinger;
it serves those actors (and their keys) itself, so the server under test fetches them here.
"""

import os

import uvicorn
from fediverse_pasture.verify_actor import build_app


def main() -> None:
    host, port = os.environ["PASTURE_HOST"], int(os.environ["PASTURE_PORT"])
    # Its test actors' keys are kept in data.toml in the current directory.
    app = build_app(False, f"{host}:{port}", False, 20)
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()

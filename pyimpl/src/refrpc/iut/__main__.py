"""``python -m refrpc.iut --endpoint tcp://127.0.0.1:PORT --peer-id NAME``."""

from ._main import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m sample --text_prompt "a person walks forward" --loop``: see motion_loop/generate.py."""

from motion_loop.generate import main

if __name__ == "__main__":
    raise SystemExit(main())

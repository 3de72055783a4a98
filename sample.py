"""``python -m sample --text_prompt "a person walks forward" --loop``: see motion_loop/generate.py."""

import gc

from motion_loop.generate import main

if __name__ == "__main__":
    # The objects of the imports (torch's: hundreds of thousands) live until exit: the collector
    # need not walk them at every full collection (~0.5 s a run on 2 cores), nor at exit (~1 s).
    gc.freeze()
    code = main()
    gc.freeze()
    raise SystemExit(code)

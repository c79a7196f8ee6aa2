"""``python -m bench``: run the speed figures (see bench/run.py) and write bench/results/<device>.json."""

from bench.run import main

if __name__ == "__main__":
    main()

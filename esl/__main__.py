"""``python -m esl``: the ``esl`` command line."""

from esl.cli import main

if __name__ == "__main__":
    main(prog_name="esl")

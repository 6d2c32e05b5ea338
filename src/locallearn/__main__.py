from locallearn.cli import run

run()

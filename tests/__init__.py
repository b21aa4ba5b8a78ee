import os

# Rich fixes a console's width when it is made, from $COLUMNS (pytest-xdist's workers have 80): the CLI's
# consoles, made when a test first imports luoxia.cli, get 200 columns, so tables and long lines are not cut.
os.environ["COLUMNS"] = "200"

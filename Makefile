.PHONY: run install test bench stop

run:        ## install and start a traditional node on SQLite (prefix ./meshway-node)
	scripts/quickstart.sh

install:    ## install into ./.venv
	scripts/install.sh

test:       ## run the whole test suite
	scripts/test.sh

stop:
	.venv/bin/meshway stop -p $(CURDIR)/meshway-node

bench:      ## benchmark against nginx and HAProxy (see bench/README.md)
	scripts/install.sh --test
	bench/run.sh

# Hearth. `make run` and `make test` do all set-up on a fresh Debian
# machine: missing packages (apt-get), the guest kernel (cached by content
# hash), the Go build.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin
DATA_DIR ?= /var/lib/hearth
RUN_DIR ?= /run/hearth

GUEST_LDFLAGS := -s -w
GUEST_ENV := CGO_ENABLED=0 GOOS=linux GOARCH=amd64

.PHONY: all deps build kernel compose run test unit e2e bench lint clean

all: build

# deps installs the Debian packages Hearth needs that are missing.
deps:
	@hack/deps.sh

build:
	$(GO) build -o $(BIN)/hearth ./cmd/hearth
	$(GUEST_ENV) $(GO) build -trimpath -ldflags '$(GUEST_LDFLAGS)' -o $(BIN)/hearth-init ./cmd/hearth-init
	$(GUEST_ENV) $(GO) build -trimpath -ldflags '$(GUEST_LDFLAGS)' -o $(BIN)/hearth-stub ./cmd/hearth-stub
	@hack/initrd.sh $(BIN)/hearth-init $(BIN)/hearth-stub $(BIN)/initrd.cpio

# kernel builds the guest kernel from Debian's linux-source-6.1 with
# kernel/hearth.config, cached by a hash of config, script and source.
kernel:
	@kernel/build.sh $(BIN)/vmlinux

# compose builds the Docker Compose v2 CLI plugin the end-to-end tests
# drive, cached by a hash of its version and script.
compose:
	@hack/compose.sh $(BIN)/cli-plugins/docker-compose

# run sets everything up and starts Hearth in the foreground on its
# embedded defaults, with a small busybox image in its store.
run: deps kernel build
	@mkdir -p build
	@$(GO) run ./internal/testimage/mkimage build/busybox.tar
	@$(BIN)/hearth --data-dir $(DATA_DIR) --run-dir $(RUN_DIR) image load -q -i build/busybox.tar
	@echo "In another shell: export DOCKER_HOST=unix://$(RUN_DIR)/docker.sock; docker run --rm hearth.local/busybox echo hello"
	$(BIN)/hearth --data-dir $(DATA_DIR) --run-dir $(RUN_DIR) up

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/...
	$(GO) vet -tags bench ./bench/...

unit:
	$(GO) test -count=1 ./...

e2e:
	$(GO) test -count=1 -tags e2e -timeout 35m ./test/e2e/...

test: deps kernel build compose lint unit e2e

# bench measures start time, idle cost and memory against baselines
# measured in the same run (see bench/).
bench: deps kernel build compose
	$(GO) test -count=1 -tags bench -timeout 60m -run Bench -v ./bench/

clean:
	rm -rf $(BIN) build

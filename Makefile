# make test: everything CI runs. It fetches and starts a real Kafka broker
# (scripts/kafka/kafka.sh), a real schema registry (scripts/registry/) and
# MLServer (scripts/mlserver/), runs the unit and integration tests, and
# stops them.
GO ?= go
KAFKA_PORT ?= 9092
export KAFKA_PORT
BROKERS ?= 127.0.0.1:$(KAFKA_PORT)
# The test broker also listens with SASL_SSL (SCRAM) here, with a CA and
# certificate kafka.sh makes in KAFKA_DATA/tls (see docs/SECURITY.md).
KAFKA_SASL_SSL_PORT ?= 9094
KAFKA_DATA ?= $(or $(TMPDIR),/tmp)/streamer-kafka
export KAFKA_SASL_SSL_PORT KAFKA_DATA

.PHONY: test unit integration lint build demo bench schema examples-test ml-testdata onnx-testdata bench-ml image image-language deploy-test tink-interop bench-peers bench-peers-jar bench-peers-w34 bench-peers-w3-model bench-peers-w4-text bench-peers-w4-python

test: lint unit deploy-test examples-test integration

build:
	$(GO) build -o bin/streamer ./cmd/streamer

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) run ./cmd/streamer validate examples/enrichment/topology.yaml examples/customer-stats/topology.yaml examples/windows/topology.yaml examples/enrichment-join/topology.yaml examples/stream-join/topology.yaml examples/encrypted-signups/topology.yaml examples/rescoring/v1.yaml examples/rescoring/v2.yaml
	cd examples/custompipe && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./... && $(GO) run . validate topology.yaml
	$(GO) run ./cmd/streamer schema | diff -u topology.schema.json - || (echo "topology.schema.json is stale: run make schema"; exit 1)
	@python3 -c 'import json,sys; json.load(open("deploy/grafana/streamer-dashboard.json"))' || (echo "the dashboard is not valid JSON"; exit 1)
	@for m in . deploy examples/custompipe bench/peers/goka; do (cd $$m && $(GO) mod tidy -diff >/dev/null) || { echo "$$m/go.mod or go.sum is stale (the nested modules build streamer itself): run cd $$m && go mod tidy"; exit 1; }; done

# ONNX Runtime's shared library comes from its PyPI wheel, fetched once.
unit:
	STREAMER_REQUIRE_ONNX=1 STREAMER_ONNXRUNTIME_LIB=$$(scripts/ml/onnxruntime.sh) $(GO) test -count=1 ./...

integration:
	scripts/install-tools.sh
	mkdir -p bin
	$(TINK_VENV)
	scripts/with-kafka.sh scripts/with-registry.sh scripts/with-mlserver.sh env STREAMER_INTEGRATION=1 STREAMER_BROKERS=$(BROKERS) STREAMER_ARTIFACTS=$(CURDIR)/bin STREAMER_BROKER_CONTROL=$(CURDIR)/scripts/kafka/kafka.sh \
		STREAMER_SASL_SSL_BROKERS=127.0.0.1:$(KAFKA_SASL_SSL_PORT) STREAMER_SASL_SSL_CA=$(KAFKA_DATA)/tls/ca.pem \
		$(GO) test -count=1 -v -timeout 30m ./integration/

# Every example topology's declarative test cases; the custom-pipe example
# is a module of its own (examples/custompipe/go.mod), built, vetted and
# tested from its directory as a user would, with the redact pipe built in.
examples-test:
	mkdir -p bin
	$(GO) run ./cmd/streamer test --junit bin/examples-junit.xml examples/enrichment examples/customer-stats examples/windows examples/enrichment-join examples/stream-join examples/encrypted-signups
	cd examples/custompipe && $(GO) test -count=1 ./... && $(GO) run . test .

# Retrains the small real models in ml/testdata with the xgboost and lightgbm libraries
# (PyPI), with held-out predictions the Go evaluators must match.
ml-testdata:
	python3 -m venv bin/mlvenv && bin/mlvenv/bin/pip install -q xgboost==3.2.0 lightgbm==4.7.0 numpy scikit-learn
	bin/mlvenv/bin/python scripts/ml/train.py

# The Python side of the encryption interop test (issue 17): PyPI tink and
# confluent-kafka in bin/tinkvenv (about a minute to install), then the
# test against a broker it starts. Not in `make test`: the integration run
# there skips TestEncryptionPythonInterop unless bin/tinkvenv exists.
# Python with tink from PyPI for TestEncryptionPythonInterop (make test
# runs it: about 15 s to install once).
TINK_VENV = test -x bin/tinkvenv/bin/python || (python3 -m venv bin/tinkvenv && bin/tinkvenv/bin/pip install -q tink==1.16.1 confluent-kafka==2.16.1)

tink-interop:
	mkdir -p bin
	$(TINK_VENV)
	scripts/with-kafka.sh env STREAMER_INTEGRATION=1 STREAMER_BROKERS=$(BROKERS) \
		$(GO) test -count=1 -v -run 'TestEncryptionPythonInterop' ./integration/

# Exports the XGBoost test models to ONNX (onnxmltools) with ONNX Runtime's
# own held-out predictions.
onnx-testdata:
	python3 -m venv bin/onnxvenv && bin/onnxvenv/bin/pip install -q xgboost==3.2.0 onnxmltools==1.16.0 onnxruntime==1.24.1 onnx==1.23.2 skl2onnx==1.20.0 scikit-learn numpy
	bin/onnxvenv/bin/python scripts/ml/export_onnx.py

schema:
	$(GO) run ./cmd/streamer schema -o topology.schema.json

# The container image (deploy/Dockerfile), built with podman without pulling
# anything, then checked: at most 60 MB, non-root, `streamer version` and
# `streamer demo` run inside it. image-language has the language pipe.
image:
	deploy/image/build.sh

image-language:
	TAGS= deploy/image/build.sh

# deploy/ is a Go module of its own (k8s.io/api and kustomize stay out of
# go.mod): it renders every kustomization, decodes it strictly, and runs
# the binary as the pod would.
deploy-test:
	cd deploy && $(GO) vet -tags nolanguage ./... && $(GO) test -count=1 -tags nolanguage ./...

demo:
	$(GO) run ./cmd/streamer demo

# Remote inference against a real MLServer: one request per record vs
# micro-batches, over REST and gRPC.
bench-ml:
	scripts/with-mlserver.sh $(GO) test -count=1 ./ml -run '^$$' -bench KServe -benchtime 3s

bench:
	scripts/with-kafka.sh $(GO) run ./bench -brokers $(BROKERS)

# streamer side by side with its peers (issue 16, bench/peers): the short
# forms of W1 (with its latency runs), W2, W5 and W6 (recovery: 50,000 keys of
# state) on a broker it starts, after those of W3 and W4 (bench-peers-w34,
# below). Builds
# the Kafka Streams app with Maven (kafka-streams from Maven Central) first.
# Not part of `make test`: it is a benchmark. The long form and its figures are in bench/RESULTS.md.
PEERS_FLAGS ?= -records 50000 -rounds 1 -kstreams-rounds 2 -latency-seconds 5s
bench-peers-jar:
	mvn -q -B -f bench/peers/kstreams/pom.xml package

bench-peers: bench-peers-jar bench-peers-w34
	mkdir -p bin
	scripts/with-kafka.sh sh -c '$(GO) run ./bench/peers -workload W1 -brokers $(BROKERS) -chart bin/peers-W1.png $(PEERS_FLAGS) && \
		$(GO) run ./bench/peers -workload W2 -brokers $(BROKERS) -chart bin/peers-W2.png $(PEERS_FLAGS) && \
		$(GO) run ./bench/peers -workload W5 -brokers $(BROKERS) -chart bin/peers-W5.png $(PEERS_FLAGS) && \
		$(GO) run ./bench/peers -workload W6 -brokers $(BROKERS) -chart bin/peers-W6.png $(PEERS_FLAGS)'

# W3 (GBDT scoring) and W4 (language detection) of the peers benchmark, short
# forms, with their prerequisites: the production-sized LightGBM model,
# trained deterministically with LightGBM from PyPI (bin/mlvenv, bin/peers-w3),
# and Debian's translated fortunes (apt-get download, bin/peers-w4).
PEERS_W34_FLAGS ?= -rounds 1
bench-peers-w34: bench-peers-w3-model bench-peers-w4-text
	mkdir -p bin
	scripts/with-kafka.sh sh -c '$(GO) run ./bench/peers -workload W3 -brokers $(BROKERS) -records 20000 -chart bin/peers-W3.png $(PEERS_W34_FLAGS) && \
		$(GO) run ./bench/peers -workload W4 -brokers $(BROKERS) -records 2000 -chart bin/peers-W4.png $(PEERS_W34_FLAGS)'

bench-peers-w3-model:
	test -f bin/peers-w3/lgb-prod.txt || { (test -x bin/mlvenv/bin/python || python3 -m venv bin/mlvenv) && \
		bin/mlvenv/bin/pip install -q lightgbm==4.7.0 numpy && bin/mlvenv/bin/python scripts/bench/train_w3.py bin/peers-w3; }

bench-peers-w4-text:
	scripts/bench/fortunes.sh bin/peers-w4

# W4 with its Python peers, Quix Streams and Ray Data (both detecting with
# lingua-py), short form. Opt-in, not part of bench-peers: it installs
# quixstreams, ray[data] and their dependencies (hundreds of MB) from PyPI
# into bin/quixvenv and bin/rayvenv. The long form is in bench/RESULTS.md.
bench-peers-w4-python: bench-peers-w4-text
	test -x bin/quixvenv/bin/python || python3 -m venv bin/quixvenv
	bin/quixvenv/bin/pip install -q quixstreams==3.28.1 lingua-language-detector==2.1.1
	test -x bin/rayvenv/bin/python || python3 -m venv bin/rayvenv
	bin/rayvenv/bin/pip install -q 'ray[data]==2.60.0' lingua-language-detector==2.1.1 confluent-kafka==2.16.1
	scripts/with-kafka.sh $(GO) run ./bench/peers -workload W4 -brokers $(BROKERS) -records 2000 -rounds 1 \
		-systems streamer,naive,careful,quix,ray -chart bin/peers-W4-python.png

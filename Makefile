# Breast-ultrasound classifier: train, serve, deploy. `make help` lists the targets.
# Research use only; not a medical device.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The serving-only venv: exactly lambda_src/requirements.txt (what the Lambda image has).
SERVE_VENV ?= .venv-serve
SERVE_PY := $(SERVE_VENV)/bin/python

# One folder per site (BUSI layout; BUS-BRA's bus_data.csv names the patients). The shared copies
# are the project's development data; point DATA at your own folders (see docs/training.md).
DATA ?= ../shared/data/busi ../shared/data/busbra
CV_DATA ?= ../shared/data/busi
WEIGHTS ?= ../shared/weights/mobilenet_v2_1.0_224_imagenet_notop_from_coral_ptq.weights.h5
# The bundled model and its report. RUN=runs/<time>-<version> (a `make train` run) points the model targets
# (evaluate, serve, input-check, adapt, batch) at that run instead: its model/ and report/.
RUN ?=
ifneq ($(strip $(RUN)),)
MODEL_DIR ?= $(RUN)/model
REPORT_DIR ?= $(RUN)/report
EVAL_OUT ?= $(RUN)/eval
else
MODEL_DIR ?= lambda_src/model
REPORT_DIR ?= reports
EVAL_OUT ?= runs/eval
endif
# The model's split: evaluate scores only the held-out test images of a folder the model trained on, and
# input-check calibrates on them (SPLIT=none: no split file, every image)
SPLIT ?= $(REPORT_DIR)/split.json
SPLIT_ARG = $(if $(filter none,$(SPLIT)),,$(if $(wildcard $(SPLIT)),--split $(SPLIT)))
# SKIP_BAD=1: train, evaluate and audit leave unreadable image files out with a warning instead of failing.
SKIP_BAD ?=
SKIP_BAD_ARG = $(if $(SKIP_BAD),--skip-bad)
PORT ?= 8080
TRAIN_ARGS ?=
LOCAL ?=
ADAPT_OUT ?= runs/adapted
ADAPT_ARGS ?=
# Extra options for the model targets without their own *_ARGS (promote, evaluate, audit, input-check,
# expectations), passed as is: make promote RUN=latest ARGS=--allow-no-input-check; ARGS=--help lists them.
ARGS ?=

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help install demo test serve train train-cloud upload promote expectations data-check weights-check cv evaluate diff audit adapt input-check synth bootstrap deploy destroy status rollback bench page-shot site-eval lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# A status line before each quiet step (a failing step still prints its error, and make stops there).
# PYTHONWARNINGS: setuptools' "Editable installation." notice, about folders named like the packages,
# describes this layout by design (pyproject.toml maps them).
$(VENV)/.installed: requirements.txt model_training/requirements.txt lambda_src/requirements.txt pyproject.toml package.json
	@echo "install: creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@echo "install: installing Python packages (about a minute)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@PYTHONWARNINGS="ignore:Editable installation." $(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@echo "install: installing the pinned CDK CLI (npm ci)..."
	@npm ci --no-audit --no-fund --silent
	@touch $@
	@echo "install: done ($(VENV) and node_modules/)"

$(SERVE_VENV)/.installed: lambda_src/requirements.txt
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PY) -m pip install --quiet --upgrade pip
	$(SERVE_PY) -m pip install --quiet -r lambda_src/requirements.txt
	touch $@

install: $(VENV)/.installed ## create .venv with everything to train, synth and test (+ the pinned CDK CLI)

demo: $(SERVE_VENV)/.installed ## start the local API on the bundled model and classify examples/ over HTTP
	PYTHONPATH=lambda_src $(SERVE_PY) -m classifier.demo --model $(MODEL_DIR) --examples examples

test: $(VENV)/.installed ## run the whole test suite
	$(PY) -m pytest

serve: $(SERVE_VENV)/.installed ## local API and the page (http://127.0.0.1:$(PORT)/) on the bundled model, same events as API Gateway
	PYTHONPATH=lambda_src $(SERVE_PY) -m classifier.local_api --model $(MODEL_DIR) --port $(PORT)

train: $(VENV)/.installed data-check weights-check ## train on the site folders in DATA with WEIGHTS -> a new runs/<time>-<version>/ (the bundled model is untouched)
	$(PY) -m model_training train $(foreach d,$(DATA),--data "$(d)") --weights "$(WEIGHTS)" $(SKIP_BAD_ARG) $(TRAIN_ARGS)

# Train on AWS (docs/training.md#train-on-aws; the stack deployed with CDK_ARGS="-c training=true"): upload the
# site folders once, then the same recipe and TRAIN_ARGS as a SageMaker job; CLOUD_ARGS sets where it runs, e.g.
# CLOUD_ARGS="--instance-type ml.g5.xlarge --no-spot --max-runtime-hours 4" (--dry-run: request and cost only).
BUCKET ?=
CLOUD_ARGS ?=
upload: $(VENV)/.installed data-check ## copy the site folders in DATA to s3://BUCKET/data/<site>/ (resumable; BUCKET: the stack's by default)
	$(PY) -m model_training.s3_upload $(foreach d,$(DATA),"$(d)") $(if $(BUCKET),--bucket "$(BUCKET)") $(if $(STACK),--stack "$(STACK)")

train-cloud: $(VENV)/.installed weights-check ## make train on SageMaker: DATA="s3://<bucket>/data/<site>/ ..." (make upload prints it) -> runs/<time>-<version>/
	@for d in $(DATA); do case "$$d" in s3://*) ;; *) printf '%s\n' "error: train-cloud takes S3 prefixes, got DATA item $$d." \
	  "  make upload DATA=\"/data/busi /data/busbra\" BUCKET=<bucket> copies site folders and prints the DATA to use" \
	  "  (docs/training.md#train-on-aws)" >&2; exit 2;; esac; done
	$(PY) -m model_training train --on sagemaker $(foreach d,$(DATA),--data "$(d)") --weights "$(WEIGHTS)" $(if $(STACK),--stack "$(STACK)") $(TRAIN_ARGS) $(CLOUD_ARGS)

promote: $(VENV)/.installed ## make a run the bundled model: make promote RUN=runs/<time>-<version> (or RUN=latest)
	@test -n "$(RUN)" || { echo "usage: make promote RUN=runs/<time>-<version> (or RUN=latest); runs:"; ls -1 runs 2>/dev/null | grep -E '^[0-9]{8}-' || echo "  none yet: make train"; exit 2; }
	$(PY) -m model_training promote "$(RUN)" $(ARGS)

expectations: $(VENV)/.installed ## record MODEL_DIR's drift band and pre-traffic answers in its model.json (promote does this)
	$(PY) -m model_training expectations --model $(MODEL_DIR) --report $(REPORT_DIR) --examples examples $(ARGS)

cv: $(VENV)/.installed weights-check ## k-fold cross-validation of a frozen-recipe config on CV_DATA's train + val (never test) -> runs/cv
	$(PY) -m model_training cv --data "$(CV_DATA)" --weights "$(WEIGHTS)" --out runs/cv $(TRAIN_ARGS)

evaluate: $(VENV)/.installed data-check ## score each folder in DATA through the served model (held-out images of training sites) -> $(EVAL_OUT)/<folder>
	@for d in $(DATA); do $(PY) -m model_training evaluate --model $(MODEL_DIR) --data "$$d" --out "$(EVAL_OUT)/$$(basename $$d)" $(SPLIT_ARG) $(SKIP_BAD_ARG) $(ARGS) || exit 1; done

# The defaults point into ../shared, the project's development copy of the data (docs/training.md#data-and-weights).
data-check:
	@for d in $(DATA); do test -d "$$d" || { printf '%s\n' "error: data folder $$d not found." \
	  "  DATA names one folder per site in the BUSI layout (<root>/<class>/*.png, masks <name>_mask.png)." \
	  "  Get BUSI from Kaggle (aryashah2k/breast-ultrasound-images-dataset), then e.g. make $(firstword $(MAKECMDGOALS)) DATA=/data/busi" \
	  "  (docs/training.md#data-and-weights)" >&2; exit 2; }; done

weights-check:
	@case "$(WEIGHTS)" in imagenet|none) ;; *) test -f "$(WEIGHTS)" || { printf '%s\n' "error: weights file $(WEIGHTS) not found." \
	  "  Use WEIGHTS=imagenet (Keras downloads the ImageNet MobileNetV2 weights once; needs internet)" \
	  "  or WEIGHTS=/path/to/a.weights.h5 (docs/training.md#data-and-weights)" >&2; exit 2; } ;; esac

adapt: $(VENV)/.installed ## refit the model's cheap parts to a new site: make adapt LOCAL=/path/to/labelled ADAPT_OUT=runs/adapted
	@test -n "$(LOCAL)" || { echo "usage: make adapt LOCAL=/path/to/the/new/site [ADAPT_OUT=runs/adapted] (labelled, BUSI layout; docs/training.md)" >&2; exit 2; }
	$(PY) -m model_training adapt --model $(MODEL_DIR) --data "$(LOCAL)" --out $(ADAPT_OUT) $(ADAPT_ARGS)

input-check: $(VENV)/.installed ## fit the "is this a breast ultrasound?" check of $(MODEL_DIR) on the sites in DATA -> its model.json + $(REPORT_DIR)/input_check
	$(PY) -m model_training input-check --model $(MODEL_DIR) $(foreach d,$(DATA),--data "$(d)") --report $(REPORT_DIR)/input_check $(SPLIT_ARG) $(ARGS)

audit: $(VENV)/.installed data-check ## duplicate/conflict audit of each folder in DATA -> runs/audit-<folder>.json
	@for d in $(DATA); do $(PY) -m model_training audit "$$d" --out "runs/audit-$$(basename $$d).json" $(SKIP_BAD_ARG) $(ARGS) || exit 1; done

# Local batch scoring (classifier.batch): INPUT is a folder or a list file; OUT .csv or .jsonl; a rerun resumes.
# make batch INPUT=/path/to/archive OUT=results.csv BATCH_ARGS="--processes 2 --labelled"
INPUT ?= examples
OUT ?= reports/batch/results.csv
BATCH_ARGS ?=
batch: $(VENV)/.installed ## score every image under INPUT (or listed in it) into OUT, all cores, resumable
	$(PY) -m classifier.batch score "$(INPUT)" --out "$(OUT)" --model $(MODEL_DIR) $(BATCH_ARGS)

# After `make deploy`: health answers with the bundled model, examples get labels, a bad body gets a 4xx.
STACK ?=
smoke: $(VENV)/.installed ## check the deployed stack STACK (URL and API key looked up with boto3)
	@test -n "$(STACK)" || { echo "usage: make smoke STACK=<stack name> [AWS_PROFILE=...] [AWS_REGION=...]"; exit 2; }
	$(PY) -m classifier.smoke --stack "$(STACK)" --model $(MODEL_DIR) --examples examples

# After a deploy (docs/deploy.md): what the live alias serves and the alarms; roll a release back.
status: $(VENV)/.installed ## deployed stack STACK: model version per alias version, traffic weights, deployment, alarms
	@test -n "$(STACK)" || { echo "usage: make status STACK=<stack name> [AWS_PROFILE=...] [AWS_REGION=...]"; exit 2; }
	$(PY) -m infra.operate status --stack "$(STACK)"

TO ?=
rollback: $(VENV)/.installed ## stop a canary in progress with rollback, else point STACK's alias at the previous version (TO=N)
	@test -n "$(STACK)" || { echo "usage: make rollback STACK=<stack name> [TO=<version>] [AWS_PROFILE=...]"; exit 2; }
	$(PY) -m infra.operate rollback --stack "$(STACK)" $(if $(TO),--to "$(TO)")

# The CDK CLI pinned in package.json, run with the venv's python3 first on PATH (cdk.json: "python3 app.py").
# Extra CLI arguments: make deploy CDK_ARGS="-c apiKey=false -c architecture=arm64".
CDK_ARGS ?=
CDK := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx --no-install cdk

# cdk synth for synth and lint: what the CLI says is shown, except the blank line it prints for
# cdk-nag's passing report; cdk-nag errors fail the synth. Leaves $$nag to the verdict line.
SYNTH = out="$$($(CDK) synth --quiet --no-notices $(CDK_ARGS) 2>&1)"; status=$$?; \
	if [ -z "$${out//[[:space:]]/}" ]; then nag="cdk-nag clean"; else printf '%s\n' "$$out"; nag="cdk-nag: see above"; fi; \
	[ $$status -eq 0 ] || exit $$status

synth: $(VENV)/.installed ## cdk synth with the pinned CLI (offline, no Docker needed); writes cdk.out/
	@$(SYNTH); echo "synth: OK, $$nag, template $$(ls cdk.out/*.template.json | tr '\n' ' ')(image asset in cdk.out/)"

bootstrap: $(VENV)/.installed ## cdk bootstrap: once per AWS account and region, before the first deploy
	@$(PY) -m infra.preflight --no-docker
	$(CDK) bootstrap --no-notices $(CDK_ARGS)

# BUILDX_NO_DEFAULT_ATTESTATIONS: build a plain single-platform image (Lambda refuses attestation manifests).
deploy: $(VENV)/.installed ## cdk deploy (needs Docker with buildx, AWS credentials, `cdk bootstrap` once)
	@$(PY) -m infra.preflight
	BUILDX_NO_DEFAULT_ATTESTATIONS=1 $(CDK) deploy --require-approval never --no-notices $(CDK_ARGS)

diff: $(VENV)/.installed ## cdk diff: what a deploy would change (needs AWS credentials), IAM changes included
	@$(PY) -m infra.preflight --no-docker
	$(CDK) diff --no-notices $(CDK_ARGS)

destroy: $(VENV)/.installed ## delete the stack (with removalPolicy destroy, also the repository and logs)
	@$(PY) -m infra.preflight --no-docker
	$(CDK) destroy --force --no-notices $(CDK_ARGS)

bench: $(VENV)/.installed ## benchmarks -> bench/results.{json,md}, docs/benchmarks.md (options: make bench BENCH_ARGS=--help)
	$(PY) -m bench --readme docs/benchmarks.md $(BENCH_ARGS)

page-shot: $(VENV)/.installed ## re-shoot docs/page.png: the page on the bundled model in Chromium (apt-get install -y chromium)
	PAGE_SCREENSHOT=docs/page.png $(PY) -m pytest tests/browser -q -k bundled_model -p no:cacheprovider

# What a hospital would see: each folder in SITES over real HTTP at every operating point (bench/site_eval.py).
SITES ?= ../shared/data/uclm_dev
site-eval: $(VENV)/.installed ## score site folders over HTTP at each operating point: make site-eval SITES="/data/a /data/b" -> runs/site_eval
	$(PY) -m bench.site_eval --model $(MODEL_DIR) $(foreach d,$(SITES),--data "$(d)") $(SPLIT_ARG) --out runs/site_eval

lint: $(VENV)/.installed ## hadolint on the Dockerfile, cdk synth (cdk-nag) + cfn-lint on the template
	@$(VENV)/bin/hadolint lambda_src/Dockerfile model_training/Dockerfile
	@$(SYNTH); $(VENV)/bin/cfn-lint cdk.out/*.template.json || exit $$?; \
	if [ "$$nag" = "cdk-nag clean" ]; then echo "lint: hadolint, cdk-nag and cfn-lint clean"; \
	else echo "lint: hadolint and cfn-lint clean; $$nag"; fi

clean: ## remove build outputs (keeps the venvs and the bundled model)
	rm -rf cdk.out .pytest_cache

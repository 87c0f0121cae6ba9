// Package deploy owns the deployment files of streamer: the container image
// (Dockerfile, image/) and the Kubernetes kustomization (kubernetes/). It is
// a Go module of its own so that the Kubernetes and kustomize modules its
// tests need stay out of streamer's go.mod; `make deploy-test` (part of
// `make test`) runs them. The tests render every kustomization and check
// it against the streamer binary: see kubernetes_test.go.
package deploy

// Package inferencepb is the generated Go code for the KServe V2 (Open
// Inference Protocol) gRPC API, inference.GRPCInferenceService, that MLServer,
// KServe and Triton serve. grpc_predict_v2.proto is the public spec, kept
// verbatim; run `go generate ./ml/internal/inferencepb` (or
// scripts/ml/gen-proto.sh) after changing it.
package inferencepb

//go:generate ../../../scripts/ml/gen-proto.sh

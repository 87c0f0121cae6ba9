// Package builtin holds streamer's built-in pipe types (filter, map, route,
// explode, dedupe, aggregate, window, join, stream_join, predict), each in
// a file of its own, and registers them into pipes.DefaultEnvironment when
// imported. Package topology imports it, so everything that compiles
// topologies (the engine, streamertest, the streamer command) has them.
//
// It sits behind the public API (package pipes) on purpose, as Benthos'
// internal/impl sits behind public/service: the built-ins link the ML
// backends (package ml: gRPC, ONNX Runtime) and their config types are
// free to change between minor versions. A custom pipe imports pipes
// alone; see docs/your-own-pipes.md.
package builtin

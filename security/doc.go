// Package security holds tests, no code: they start real NATS servers with
// the configurations docs/permissions.md prints (security/testdata, included
// in the doc verbatim, so the doc cannot drift from what is tested) and show
// what each role can and cannot do, and that agentd serves over TLS with a
// CA, server and client certificates made by the test.
//
//	go test -race ./security/
package security

// Package api holds the wire types of lpd's HTTP JSON API and a client for
// it. The server side lives in package cluster; lpctl uses Client.
//
// Every response body is JSON. An error answer carries {"error": "one line"}
// and a non-2xx status; Client turns it into an *Error.
//
// # Concurrency
//
// A Client is safe for concurrent use; the types here are plain values.
package api

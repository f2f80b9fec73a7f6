// Package webhooks sends every event of a tenant to the tenant's HTTPS
// endpoints, signed as Standard Webhooks v1 (standardwebhooks.com).
//
// The event log written by the relay (package events) is the outbox: an
// event is on disk in the transaction of the state change that caused it.
// The Dispatcher reads it per endpoint from a persisted cursor, so an
// endpoint that is down, paused or disabled simply stops its cursor and its
// events wait; nothing is copied per endpoint until it is attempted. Each
// attempt is recorded (the deliveries an API user lists), a failed one is
// scheduled again with backoff for more than a day (Schedule), and an event
// still refused after the last retry becomes a dead letter. The webhook-id
// of every attempt is the event's id.
//
// An endpoint that keeps failing is paused: the dispatcher stops taking its
// new events and sends one probe at a time, at a widening interval; the
// first success resumes it and makes its pending retries due at once. A
// 410 Gone disables it until the tenant enables it again.
//
// Endpoint URLs are the tenant's to choose, so the HTTP client checks the
// address it connects to (not only the name it resolved), follows no
// redirects and reads a few KiB of any answer (ssrf.go).
//
// The package is free of echo types: the admin package maps its errors to
// HTTP. Storage is the Store interface; Service keeps it over a storage
// backend (Rows, on bbolt or PostgreSQL: docs/storage.md).
package webhooks

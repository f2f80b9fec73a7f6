// Package cluster holds the multi-process tests of issue 17: several
// heed serve processes (nodes) on 127.0.0.1, .2 and .3 sharing one
// throwaway PostgreSQL (internal/backend/postgres/pgtest), each with its
// own configuration file and data directory, delivering over real SMTP to
// go-smtp sinks on loopback (internal/testsink), killed with SIGKILL and
// restarted as an operator's machine would be.
//
// The package has no code of its own; its tests build the heed binary
// once (TestMain) and drive it from outside, through SMTP, the admin API
// and the public pages only. docs/postgresql.md ("Several nodes") says
// what they hold.
package cluster

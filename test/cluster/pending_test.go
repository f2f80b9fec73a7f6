package cluster

// The multi-process tests still to write, each a few lines on
// this package's harness:
//
// TODO(issue 17): TestPeriodicJobOncePerPeriod. Three nodes with a short
// retention period; each run of a cluster-once job is an audit record or
// a log line ("retention: purged"); over three periods count exactly one
// run per period across the nodes' output (node.output()).

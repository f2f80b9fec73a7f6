package queue

import (
	"math/rand/v2"
	"time"
)

// retryDelays is the documented retry schedule after the n-th failed
// attempt (docs/delivery.md): the first retry comes within a minute, the
// gaps double up to an hour, then hourly until max_queue_lifetime.
var retryDelays = []time.Duration{
	30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour,
}

// Backoff returns the delay before the next attempt after attempts failed
// attempts, with ±20% jitter so that mail deferred together (a receiving
// server's outage) does not come back in one burst.
func Backoff(attempts int) time.Duration {
	i := min(max(attempts-1, 0), len(retryDelays)-1)
	d := retryDelays[i]
	jitter := time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	return d + jitter
}

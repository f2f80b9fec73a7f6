package webhooks

import (
	"context"

	"github.com/heedmail/heed/internal/events"
)

// FindEvent is findEvent, for the external tests (which build the store
// over the backends, which import this package).
func (m *Manager) FindEvent(ctx context.Context, tenant, eventID string) (events.Event, error) {
	return m.findEvent(ctx, tenant, eventID)
}

"""Public (unauthenticated but token-bound) endpoints of messaging: tracking, unsubscribe, inbound webhooks."""

"""Every write and every rule. Services take explicit arguments (including `now`) and flush, never commit."""

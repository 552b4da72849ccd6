"""The pure core: models -> resolve -> render -> plan. No I/O, no clock, no network."""

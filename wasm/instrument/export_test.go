package instrument

// CoalesceOnly exposes the data-segment rewrite alone to the tests.
var CoalesceOnly = coalesceOnly

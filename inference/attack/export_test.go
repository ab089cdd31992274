package attack

// AutoRunBatch exposes autoRunBatch to the package's external tests.
var AutoRunBatch = autoRunBatch

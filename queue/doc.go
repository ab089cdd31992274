// Package queue runs the explorer's attacks, and the sweeps, competitions and
// transfer matrices, on workers over NATS JetStream: the adapter between
// stateless web nodes (`gibbon serve --nats URL`) and GPU or CPU machines running
// the engine and the sweep executor (`gibbon worker --nats URL`). It owns the
// subjects, streams and buckets below, and the web node's side of a run (Runner:
// server.Runner and server.SweepRunner) and the worker's (Worker); the engine
// and sweep.Execute do the work, the server shows it.
//
// # Routing by model set
//
// A worker has a set of models, each named and checksummed (its zoo). The set's
// id is the first 16 hex digits of SHA-256 over its sorted "name sha256" lines,
// and each set has its own work-queue stream GIBBON_JOBS_<set> on the subject
// gibbon.jobs.<set>, with one durable pull consumer "workers" shared by every
// worker of that set (explicit acks, AckWait with InProgress heartbeats from the
// worker, MaxDeliver deliveries at most); explorer runs and sweeps share it. A worker only ever pulls from its own
// set's stream, so a run goes only to a worker that has all its models: the web
// node picks the stream. Workers advertise themselves in the KV bucket
// gibbon_workers (key: worker name; value: set, models with checksums, provider,
// concurrency), re-written every 5 s under a 15 s bucket TTL, so a dead worker's
// advert disappears by itself. For a run, the web node lists the plan's models
// (attacked, network, defences; a sweep's: every model its plan uses) with the
// checksums its own zoo has, and picks
// among the live sets holding all of them the least loaded (pending and running
// jobs per worker slot). When no set holds them, the run fails at once saying
// which model no worker has.
//
// One stream per set (rather than one stream with a filtered consumer per set)
// makes the queue position exact and cheap: a job's position is the number of
// sequence numbers between the consumer's last delivered one and the job's own,
// less the ones deleted (jobs whose page left). A set's stream holds at most
// 1000 waiting jobs; beyond that a run is refused as busy.
//
// # One run
//
// The web node subscribes to gibbon.run.<id>.events and publishes the job (the
// engine.Job with its image, and the models it needs). The worker that pulls it
// subscribes to gibbon.run.<id>.cancel, then asks the web node (request/reply)
// whether the run is still wanted: no answer means the page is gone and the job
// is dropped. Then it prepares and executes the plan: the start and the end
// (record, final frame, error) go as requests the web node answers, so they
// arrive or the worker knows they did not; the frames in between are plain
// publishes, which a slow web node may drop — as the explorer's outbox drops
// frames for a slow page — but never the final one, which travels with the end.
// Everything travels as gob (engine.Start, Frame and Record are data only). A
// job or an event too large for a NATS message (a large upload, an ImageNet
// record) goes through the object store gibbon_payloads, and the message names
// it.
//
// Every AckWait/3 the worker tells JetStream the job is in progress and asks the
// web node whether the run is still wanted: Stop, a closed page or a dead web
// node cancel it within a step (Stop also publishes on the cancel subject, at
// once). A worker that dies stops both: after AckWait JetStream gives the job to
// another worker, which asks again, and the web node goes on relaying from the
// frame the page has (a CPU run with the same seed gives the same frames). After
// MaxDeliver deliveries JetStream publishes a max-deliveries advisory (when a
// live worker of the set asks for work); the web node, listening for its jobs',
// tells the page the run was given up. When no worker of the set is left, its
// adverts expire and the page hears that instead, within 15 s. Nothing of
// a run is booked for saving before its record arrives whole, so nothing is
// half-saved. When its NATS connection drops, a web node fails its running runs
// at once with a clear message, and a worker cancels its own without acking
// them; new runs work once the connection is back.
//
// # Sweeps, competitions and transfer matrices
//
// A sweep travels as a sweep.Job: the settings as the web node planned them
// (defaults filled in, every model named), an image sweep's clean image as the
// PNG on the models' grid (exactly what it attacks), the limits and the time
// limit. The web node plans first (the page's started message and the run's
// models come from its plan); the worker plans the job again on its zoo — the
// same files, by checksum — loads its input (the MNIST test set from the Go
// module cache, once per worker) and runs sweep.Execute, the executor the
// commands and the in-process server use. Its start is a request, as an
// explorer run's; an image sweep's points and a data set run's partial results
// are published as frames are; the end carries the sweep.Outcome (data only:
// the typed result and the gallery entry), through the object store when it is
// too large for a message. Stop, a closed page, the queue position, redelivery
// and the give-up after MaxDeliver work as for explorer runs; a redelivered
// sweep runs again from its start, and the web node hands on only the points
// and progress the page does not have yet.
//
// # Run book
//
// RunStore keeps the server's run book (finished runs waiting for their page's
// Save) in the KV bucket gibbon_runbook, with the book's one-hour TTL, so a Save
// that lands on another web node than the page's websocket finds the run.
package queue

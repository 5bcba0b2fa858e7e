// Package rabbitmqtest starts throwaway RabbitMQ brokers for tests: a real
// broker (Debian's rabbitmq-server 3.10, installed by
// scripts/ensure-rabbitmq) run as a foreground process, with a node name,
// AMQP port, distribution port and epmd of its own, all on 127.0.0.1, its
// data, logs and configuration in a directory of its own under the system's
// temp directory, and no plugins (no management). A test that needs one
// fails, never skips, when the broker cannot start.
//
// # Processes
//
// Each broker is two process trees, both started here: an epmd (the Erlang
// port mapper, started first, in the foreground, on a free port given to the
// broker as ERL_EPMD_PORT, so the broker never starts a shared daemon of its
// own), and the broker's Erlang VM (rabbitmq-server execs erl, which execs
// beam.smp, so the started process is the VM itself; its helpers
// erl_child_setup and inet_gethost are its children). Both are in process
// groups of their own and receive SIGKILL from the kernel if the test
// process dies (Pdeathsig); the VM's helpers exit when the VM is gone.
//
// # Sharing
//
// A broker takes 5 to 10 s to start here. A test package that calls Main
// from its TestMain can use Shared: one broker per test binary, started on
// first use and stopped when the tests end. Tests then keep apart by name:
// Name gives each one a unique prefix for its exchanges and queues (cheap),
// or VHost a virtual host of its own (rabbitmqctl, about 1.5 s). A test
// that kills or restarts a broker starts one of its own with Start.
//
// # Stopping
//
// Stop kills the VM and its helpers (SIGKILL to its process group and to
// every descendant), then its epmd, waits for them, and removes the
// directory: the data is thrown away, so there is nothing to shut down
// gracefully. Kill is a crash of the broker alone (its epmd stays, as the
// host's would); Restart starts it again on the same node name, ports and
// data directory, where it recovers its durable queues.
package rabbitmqtest

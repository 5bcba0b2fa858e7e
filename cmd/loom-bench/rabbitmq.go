package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitPublish is the rabbitmq-publish baseline: raw amqp091 publishes
// with publisher confirms to a quorum queue of the broker at --rabbitmq,
// persistent, mandatory, one 100-byte message per call, each call waiting
// for its confirm: what a durable send costs on RabbitMQ alone, without
// Loom. The callers share one connection and one confirm channel per 16
// of them (amqp091 channels are safe for concurrent publishes). The queue,
// loom-bench-publish-<run>, is purged after every measurement and deleted
// at the end.
type rabbitPublish struct {
	conn    *amqp.Connection
	chans   []*amqp.Channel
	callers int
	queue   string
	body    []byte
}

var errNacked = errors.New("the broker did not confirm the publish")

// startRabbitPublish connects to url and declares the baseline's queue.
func startRabbitPublish(url string, callers int) (*rabbitPublish, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", redactURL(err, url))
	}
	x := &rabbitPublish{conn: conn, callers: callers, queue: "loom-bench-publish-" + strings.ToLower(rand.Text()[:12]), body: make([]byte, 100)}
	for i := range x.body {
		x.body[i] = 'a' + byte(i%26)
	}
	for range (callers + 15) / 16 {
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("rabbitmq: opening a confirm channel: %w", err)
		}
		x.chans = append(x.chans, ch)
	}
	if _, err := x.chans[0].QueueDeclare(x.queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: declaring %s: %w", x.queue, err)
	}
	return x, nil
}

// publish sends one message and waits for its confirm.
func (x *rabbitPublish) publish(ctx context.Context, g int) error {
	dc, err := x.chans[g%len(x.chans)].PublishWithDeferredConfirmWithContext(ctx, "", x.queue, true, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: x.body})
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errNacked
	}
	return nil
}

// measure runs the baseline for d, then empties the queue.
func (x *rabbitPublish) measure(ctx context.Context, d time.Duration) (result, error) {
	r := load("rabbitmq-publish", x.callers, d, func(g int, _ int64) error { return x.publish(ctx, g) })
	if _, err := x.chans[0].QueuePurge(x.queue, false); err != nil {
		return r, fmt.Errorf("emptying %s: %w", x.queue, err)
	}
	return r, nil
}

// close deletes the queue and closes the connection.
func (x *rabbitPublish) close() {
	if _, err := x.chans[0].QueueDelete(x.queue, false, false, false); err != nil {
		fmt.Fprintf(os.Stderr, "loom-bench: closing the rabbitmq baseline: deleting %s: %v\n", x.queue, err)
	}
	x.conn.Close()
}

// redactURL takes the password in url out of err's text.
func redactURL(err error, url string) error {
	s := err.Error()
	if i, j := strings.Index(url, "://"), strings.LastIndex(url, "@"); i >= 0 && j > i {
		if k := strings.Index(url[i+3:j], ":"); k >= 0 {
			if pw := url[i+3+k+1 : j]; pw != "" {
				s = strings.ReplaceAll(s, pw, "[redacted]")
			}
		}
	}
	return errors.New(s)
}

package cosmos

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// Status is the HTTP status Cosmos DB answered err with, or 0 when err
// carries no answer (a connection or TLS failure, a timeout, a context
// that ended).
func Status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// Status codes the adapters read as answers, not failures.
const (
	StatusNotFound           = http.StatusNotFound           // no such document
	StatusConflict           = http.StatusConflict           // create of an id that exists
	StatusPreconditionFailed = http.StatusPreconditionFailed // If-Match on a stale etag
	StatusTooManyRequests    = http.StatusTooManyRequests    // throttled: over the provisioned RU/s
)

// NotApplied reports whether err, the error of a request to Cosmos DB,
// proves that it had no effect:
//
//   - Cosmos DB answered with a 4xx status other than 408: it refused the
//     request before doing anything (bad request, unauthorized, forbidden,
//     not found, conflict, precondition failed, too large, throttled);
//   - or no connection could be made: the dial failed or the endpoint's
//     certificate was refused, so nothing was sent.
//
// false means it may have taken effect: 408 and 5xx (Cosmos DB documents
// that a write answered so may have been applied), a connection lost
// after sending, a timeout, the caller's context ending while the request
// was in flight. nil is false.
func NotApplied(err error) bool {
	if err == nil {
		return false
	}
	if s := Status(err); s != 0 {
		return s >= 400 && s < 500 && s != http.StatusRequestTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	return errors.As(err, &dnsErr) || errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr)
}

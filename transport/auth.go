package transport

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"

	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/transport/loompb"
)

// mdAuthorization is the metadata key of a bearer token.
const mdAuthorization = "authorization"

// caller is who a request comes from, as far as the server can tell.
type caller struct {
	node  bool   // presented a node certificate (verified: CheckRoles)
	who   string // what it presented, for refusals
	token string // its bearer token, "" without one
}

// callerOf reads the peer's certificate and the bearer token of ctx. A
// node certificate counts only when the server verifies incoming
// certificates (CheckRoles): one that was not checked against the CA
// proves nothing.
func (s *Server) callerOf(ctx context.Context) caller {
	c := caller{who: "a peer without a certificate"}
	if p, ok := grpcpeer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			role, name, err := tlsconf.RoleOf(ti.State.PeerCertificates[0])
			switch {
			case err != nil:
				c.who = err.Error()
			default:
				c.who = fmt.Sprintf("%s certificate %q", role, name)
				c.node = role == tlsconf.RoleNode && s.opts.CheckRoles
			}
		}
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdAuthorization); len(v) > 0 {
		c.token = auth.Bearer(v[0])
	}
	return c
}

// allow checks that c may do what needs: nodes may do anything; others
// need a token with the scope, when the server checks tokens. nodeOnly
// methods are refused to everyone but nodes when roles or tokens are
// checked: no token opens them.
func (s *Server) allow(c caller, fullMethod string, need auth.Scope) error {
	if c.node {
		return nil
	}
	if nodeOnly[fullMethod] {
		if s.opts.CheckRoles || s.opts.Tokens != nil {
			return fmt.Errorf("%w: %s is node-internal: it needs a node certificate, and the caller presented %s", auth.ErrPermissionDenied, fullMethod, c.who)
		}
		return nil
	}
	if s.opts.Tokens == nil {
		return nil
	}
	if _, err := s.opts.Tokens.Check(c.token, need); err != nil {
		return fmt.Errorf("%s: %w", fullMethod, err)
	}
	return nil
}

// unaryNeed is the scope a unary request needs.
func unaryNeed(fullMethod string, req any) auth.Scope {
	switch r := req.(type) {
	case *loompb.InvokeRequest:
		return auth.CallScope(r.ActorType)
	case *loompb.SendRequest:
		return auth.CallScope(r.ActorType)
	case *loompb.RunTaskRequest:
		return auth.TasksRun
	}
	return auth.Admin // anything else: fail closed
}

// streamNeed is the scope opening a stream needs; an Actors.Stream's
// calls are checked one by one as well (callNeed).
func streamNeed(fullMethod string) auth.Scope {
	switch fullMethod {
	case loompb.Actors_Stream_FullMethodName, loompb.Topology_Watch_FullMethodName:
		return auth.Authenticated
	}
	return auth.Admin
}

// callNeed is the scope one call on an Actors.Stream needs.
func callNeed(req *loompb.InvokeRequest) auth.Scope {
	if req.Send != nil {
		return auth.CallScope(req.Send.ActorType)
	}
	return auth.CallScope(req.ActorType)
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.allow(s.callerOf(ctx), info.FullMethod, unaryNeed(info.FullMethod, req)); err != nil {
		return nil, statusError(err)
	}
	return h(ctx, req)
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	c := s.callerOf(ss.Context())
	if err := s.allow(c, info.FullMethod, streamNeed(info.FullMethod)); err != nil {
		return statusError(err)
	}
	return h(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, c)})
}

type callerKey struct{}

// authedStream carries the caller its interceptor found, for the checks
// of the stream's calls.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// allowCall checks one call of an Actors.Stream against the stream's
// caller (found by streamAuth; none when the server checks nothing).
func (s *Server) allowCall(ctx context.Context, req *loompb.InvokeRequest) error {
	c, ok := ctx.Value(callerKey{}).(caller)
	if !ok {
		return nil
	}
	return s.allow(c, loompb.Actors_Stream_FullMethodName, callNeed(req))
}

// bearerCreds puts a token on every RPC of a client's connections.
type bearerCreds struct{ header string }

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{mdAuthorization: b.header}, nil
}

// RequireTransportSecurity: a token never travels in the clear.
func (bearerCreds) RequireTransportSecurity() bool { return true }

// An OTLP/gRPC trace receiver for the node suite's "traces" scenario: the servers' exporter
// sends it spans (opentelemetry.proto.collector.trace.v1.TraceService, decoded with the
// OpenTelemetry project's own generated protobuf), and it keeps each one as a flat JSON
// record: printed as a line on stdout (kubectl logs) and served, all of them, as JSON lines at
// GET /spans for the test to poll. The OpenTelemetry Collector would do the receiving too,
// but building it from the Go module proxy costs minutes; this is a few seconds.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
)

// span is one received span, with its resource's attributes beside its own.
type span struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	Parent     string            `json:"parent_span_id"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Resource   map[string]string `json:"resource"`
	Attributes map[string]string `json:"attributes"`
	Links      []link            `json:"links"`
}

type link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

type receiver struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	lines [][]byte
}

func (r *receiver) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		resource := flatten(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				links := make([]link, 0, len(s.GetLinks()))
				for _, l := range s.GetLinks() {
					links = append(links, link{hex.EncodeToString(l.GetTraceId()), hex.EncodeToString(l.GetSpanId())})
				}
				line, err := json.Marshal(span{
					TraceID:    hex.EncodeToString(s.GetTraceId()),
					SpanID:     hex.EncodeToString(s.GetSpanId()),
					Parent:     hex.EncodeToString(s.GetParentSpanId()),
					Name:       s.GetName(),
					Kind:       s.GetKind().String(),
					Resource:   resource,
					Attributes: flatten(s.GetAttributes()),
					Links:      links,
				})
				if err != nil {
					return nil, err
				}
				r.keep(line)
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (r *receiver) keep(line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	fmt.Printf("%s\n", line)
}

func (r *receiver) serveSpans(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.Header().Set("Content-Type", "application/jsonl")
	for _, line := range r.lines {
		w.Write(line)
		w.Write([]byte("\n"))
	}
}

// flatten renders attribute values as strings: the test compares names and ids only.
func flatten(kvs []*common.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *common.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *common.AnyValue_IntValue:
			out[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *common.AnyValue_BoolValue:
			out[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		case *common.AnyValue_DoubleValue:
			out[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}

func main() {
	grpcAddr, httpAddr := env("OTLP_GRPC_ADDR", ":4317"), env("SPANS_HTTP_ADDR", ":8080")
	lis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		log.Fatal(err)
	}
	r := &receiver{}
	server := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(server, r)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /spans", r.serveSpans)
	go func() { log.Fatal(http.ListenAndServe(httpAddr, mux)) }()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		server.GracefulStop()
	}()
	log.Printf("OTLP/gRPC on %s, spans at http://%s/spans", grpcAddr, httpAddr)
	if err := server.Serve(lis); err != nil {
		log.Fatal(err)
	}
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

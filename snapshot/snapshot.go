package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// FormatVersion is the version of the snapshot envelope this code writes.
const FormatVersion = 1

// Errors a caller may test with errors.Is.
var (
	// ErrNoSnapshot: the root has no usable snapshot at or below the target.
	ErrNoSnapshot = errors.New("no snapshot")
	// ErrCorrupt: a snapshot failed its checksum or does not decode.
	ErrCorrupt = errors.New("snapshot corrupt")
	// ErrVersion: a snapshot written by another format or projector version.
	ErrVersion = errors.New("snapshot version not supported")
)

// Header describes one stored snapshot. Seq is the last stream sequence
// the snapshot covers; SHA256 is the hex digest of the body.
type Header struct {
	Format    uint16 `msgpack:"format" json:"format"`
	Projector uint16 `msgpack:"projector" json:"projector"`
	Root      string `msgpack:"root" json:"root"`
	Seq       uint64 `msgpack:"seq" json:"seq"`
	Count     uint64 `msgpack:"count" json:"count"` // records folded
	Time      int64  `msgpack:"time" json:"time"`   // Unix nanoseconds when taken
	SHA256    string `msgpack:"sha256" json:"sha256"`
	Size      int    `msgpack:"size" json:"size"`
	// Trust is the ID of the trust policy the registry was folded under
	// (projector.Trust), "" for none: a snapshot restores only a registry
	// with the same policy.
	Trust string `msgpack:"trust,omitempty" json:"trust,omitempty"`
}

// Name is the object name of the snapshot body: root.seq, the sequence
// zero-padded so names sort by sequence.
func (h Header) Name() string { return fmt.Sprintf("%s.%020d", h.Root, h.Seq) }

// MarshalHeader encodes a header for storage.
func MarshalHeader(h Header) ([]byte, error) { return msgpack.Marshal(h) }

// UnmarshalHeader decodes a stored header; bad bytes give ErrCorrupt.
func UnmarshalHeader(b []byte) (h Header, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: header decoder failed: %v", ErrCorrupt, p)
		}
	}()
	if err := msgpack.Unmarshal(b, &h); err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	return h, nil
}

// Capture encodes a registry into a snapshot body and its header. It does
// no I/O: take it under the registry's lock, persist it outside.
func Capture(reg *projector.Registry, now time.Time) (Header, []byte, error) {
	body, err := reg.Marshal()
	if err != nil {
		return Header{}, nil, fmt.Errorf("capture snapshot of root %s: %w", reg.Root, err)
	}
	sum := sha256.Sum256(body)
	return Header{
		Format: FormatVersion, Projector: projector.Version,
		Root: reg.Root, Seq: reg.Seq, Count: reg.Count, Time: now.UnixNano(),
		SHA256: hex.EncodeToString(sum[:]), Size: len(body), Trust: reg.TrustID(),
	}, body, nil
}

// Open verifies a body against its header (versions, checksum, root,
// sequence) and decodes it. Anything wrong gives ErrVersion or ErrCorrupt:
// such a snapshot is never trusted.
func Open(h Header, body []byte) (*projector.Registry, error) {
	if h.Format != FormatVersion || h.Projector != projector.Version {
		return nil, fmt.Errorf("snapshot %s: format %d projector %d, this code reads format %d projector %d: %w",
			h.Name(), h.Format, h.Projector, FormatVersion, projector.Version, ErrVersion)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != h.SHA256 || len(body) != h.Size {
		return nil, fmt.Errorf("snapshot %s: body of %d bytes hashes to %.12s, header says %d bytes %.12s: %w",
			h.Name(), len(body), got, h.Size, h.SHA256, ErrCorrupt)
	}
	reg, err := projector.Unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %w", h.Name(), ErrCorrupt, err)
	}
	if reg.Root != h.Root || reg.Seq != h.Seq || reg.Count != h.Count {
		return nil, fmt.Errorf("snapshot %s: body is root %.12s seq %d count %d: %w",
			h.Name(), reg.Root, reg.Seq, reg.Count, ErrCorrupt)
	}
	return reg, nil
}

// Store keeps snapshots where every process can load them. Implementations
// must be safe for concurrent use.
type Store interface {
	// Put stores a snapshot.
	Put(ctx context.Context, h Header, body []byte) error
	// List returns the headers of a root's stored snapshots, newest first.
	List(ctx context.Context, root string) ([]Header, error)
	// Body returns the stored body of a snapshot.
	Body(ctx context.Context, h Header) ([]byte, error)
}

// Source reads a root's records from the log.
type Source interface {
	// ReadRoot calls fn for each record of root with sequence >= from, up
	// to the newest at the time of the call, and returns that bound.
	ReadRoot(ctx context.Context, root string, from uint64, fn func(events.Record) error) (uint64, error)
}

// Skipped is a snapshot Restore did not trust, and why.
type Skipped struct {
	Header Header
	Err    error
}

// Result is what Restore did: where it started and what it skipped.
type Result struct {
	Registry *projector.Registry
	From     *Header   // the snapshot used, nil for a full replay
	Skipped  []Skipped // snapshots that failed verification
	Tail     int       // records folded after the snapshot
}

// Restore rebuilds a root's registry as of sequence upTo (0: the newest):
// the newest snapshot at or below upTo that verifies, plus the tail of the
// log folded on top. A snapshot that fails verification is skipped with a
// warning and the next older one is tried; with none left the registry is
// rebuilt from the whole log. The result is never a state the log does not
// give.
func Restore(ctx context.Context, store Store, src Source, root string, upTo uint64, log *slog.Logger) (Result, error) {
	return RestoreTrusted(ctx, store, src, root, upTo, nil, log)
}

// ErrOtherTrust: a snapshot folded under another trust policy.
var ErrOtherTrust = errors.New("snapshot made under another trust policy")

// RestoreTrusted is Restore for a registry with a trust policy (nil: none):
// only snapshots made under the same policy are used, and the events after
// them are folded under it.
func RestoreTrusted(ctx context.Context, store Store, src Source, root string, upTo uint64, trust *projector.Trust, log *slog.Logger) (Result, error) {
	if log == nil {
		log = slog.Default()
	}
	var res Result
	var reg *projector.Registry
	if store != nil {
		headers, err := store.List(ctx, root)
		if err != nil {
			log.Warn("list snapshots failed; replaying the log", "root", root, "err", err)
		}
		for _, h := range headers {
			if upTo != 0 && h.Seq > upTo {
				continue
			}
			if h.Trust != trust.ID() {
				err := fmt.Errorf("snapshot %s: made under trust policy %q, this registry's is %q: %w", h.Name(), h.Trust, trust.ID(), ErrOtherTrust)
				log.Debug("snapshot skipped", "root", root, "snapshot", h.Name(), "err", err)
				res.Skipped = append(res.Skipped, Skipped{Header: h, Err: err})
				continue
			}
			body, err := store.Body(ctx, h)
			if err == nil {
				reg, err = Open(h, body)
			}
			if err != nil {
				log.Warn("snapshot skipped", "root", root, "snapshot", h.Name(), "err", err)
				res.Skipped = append(res.Skipped, Skipped{Header: h, Err: err})
				continue
			}
			res.From = &h
			break
		}
	}
	if reg == nil {
		reg = projector.New(root)
	}
	reg.SetTrust(trust)
	if err := CatchUp(ctx, src, reg, upTo, func() { res.Tail++ }); err != nil {
		return res, err
	}
	res.Registry = reg
	return res, nil
}

// errStop ends a read early once the target sequence is passed.
var errStop = errors.New("stop")

// CatchUp folds the records after reg.Seq into reg, up to upTo (0: the
// newest). onRecord, when not nil, is called once per folded record.
func CatchUp(ctx context.Context, src Source, reg *projector.Registry, upTo uint64, onRecord func()) error {
	if upTo != 0 && reg.Seq >= upTo {
		return nil
	}
	_, err := src.ReadRoot(ctx, reg.Root, reg.Seq+1, func(rec events.Record) error {
		if upTo != 0 && rec.Seq > upTo {
			return errStop
		}
		reg.Apply(rec)
		if onRecord != nil {
			onRecord()
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("catch up root %s from seq %d: %w", reg.Root, reg.Seq+1, err)
	}
	return nil
}

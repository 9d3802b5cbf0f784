package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

// apiError is an error with the micro error code to answer with.
type apiError struct {
	code string
	err  error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func badRequest(format string, a ...any) error {
	return &apiError{code: "400", err: fmt.Errorf(format, a...)}
}

// fieldError is a request field that is not valid: 400 (413 when it is
// over a size limit), its message naming the field.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// invalid wraps err, if any, as the error of a request field.
func invalid(field string, err error) error {
	if err == nil {
		return nil
	}
	return &fieldError{field: field, err: err}
}

// codeOf maps an error to the micro error code (HTTP-like) a reply
// carries: the one place that decides a status.
//
//	400 a bad request: malformed JSON, an invalid field (named), bad task arguments
//	403 an escalation (a grant beyond what the parent holds)
//	404 no such root, agent or task
//	409 exists, or the agent's history moved on (conflict)
//	410 retired, migrated, or the root definition changed
//	412 a pinned ref whose task's contract changed (the body names both digests)
//	413 over a size limit
//	501 a capability, member or executor this daemon lacks, or an event newer than its code
//	503 not reachable now, shutting down, saturated
//	504 the request's deadline passed (a min_seq the stream has not reached)
//	507 the stream's limits or the server's storage are reached
//	500 anything else: a bug or an infrastructure failure. By design:
//	    a broken hash chain or an event on the wrong subject (the log is
//	    damaged), this daemon's own signing refused by its own trust
//	    policy (its configuration is wrong), a store directory another
//	    process holds (only at start); no client can cure those
//
// Every exported sentinel of agent and events has its status here on
// purpose; TestStatusOfEverySentinel fails when one is added without.
func codeOf(err error) string {
	var ae *apiError
	var fe *fieldError
	switch {
	case errors.As(err, &ae):
		return ae.code
	case errors.Is(err, events.ErrTooLarge):
		return "413"
	case errors.As(err, &fe), errors.Is(err, events.ErrInvalidName), errors.Is(err, events.ErrMalformed), errors.Is(err, agent.ErrInvalidArgs),
		errors.Is(err, events.ErrSchemaRef), errors.Is(err, agent.ErrInvalidCursor):
		return "400"
	case errors.Is(err, events.ErrEscalation):
		return "403"
	case errors.Is(err, events.ErrNotFound), errors.Is(err, agent.ErrRootNotRegistered):
		return "404"
	case errors.Is(err, events.ErrExists), errors.Is(err, events.ErrConflict),
		// The write's event was refused before (its id is in the log):
		// the history the write was made against moved on.
		errors.Is(err, events.ErrReplayed):
		return "409"
	case errors.Is(err, events.ErrRetired), errors.Is(err, events.ErrMigrated), errors.Is(err, agent.ErrRootChanged):
		return "410"
	case errors.Is(err, agent.ErrContractChanged):
		// Not 409: that is a write's conflict, which a retry can cure; a
		// pinned contract is a precondition (HTTP's If-Match on an ETag),
		// which only re-pinning after checking the new contract cures.
		return "412"
	case errors.Is(err, agent.ErrUnknownCapability), errors.Is(err, agent.ErrNoExecutor),
		// A member the recipe names and this daemon's module lacks, or one
		// the task's code takes as another type: like a capability it
		// lacks, what this daemon offers does not implement the task
		// (another daemon of the queue group may). Not 424: no earlier
		// request of the caller failed; not 400: the caller's input is
		// fine; not 500: the daemon works as built, for another recipe.
		errors.Is(err, agent.ErrUnknownMember), errors.Is(err, agent.ErrMemberType),
		// An event this daemon's code cannot read: a newer agentd can.
		errors.Is(err, events.ErrFutureVersion), errors.Is(err, events.ErrUnknownType):
		return "501"
	case errors.Is(err, agent.ErrFull):
		// HTTP's Insufficient Storage: retrying does not help until an
		// operator raises the stream's limits or frees storage.
		return "507"
	case errors.Is(err, context.DeadlineExceeded):
		return "504"
	case errors.Is(err, context.Canceled):
		return "503"
	}
	return "500"
}

// MaxRequestBytes bounds a request body: a larger one is answered 413
// before it is decoded. It holds the largest event (events.MaxEventBytes)
// as JSON with room to spare, and stays under the NATS server's default
// max_payload (1 MiB).
const MaxRequestBytes = 768 << 10

// decode parses a request body strictly: one JSON object, no unknown
// field. Its errors name JSON types and the request's fields, never Go
// types.
func decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("empty request: send a JSON object with fields %s", fieldList(v))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return badRequest("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
		case errors.As(err, &te) && te.Field == "":
			return badRequest("body must be a JSON object with fields %s, got JSON %s", fieldList(v), te.Value)
		case errors.As(err, &te):
			return badRequest("field %q: want JSON %s, got JSON %s", te.Field, jsonType(te.Type), te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			if at, fields, ok := unknownFieldAt(data, reflect.TypeOf(v), err.Error()); ok && at != "" {
				// encoding/json names the key, not the object it is in.
				return badRequest("%s is not a field of %s (its fields: %s)", strings.TrimPrefix(err.Error(), "json: "), at, fields)
			}
			return badRequest("%s is not a field of this request (its fields: %s)", strings.TrimPrefix(err.Error(), "json: "), fieldList(v))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("malformed JSON: the body ends inside a value")
		}
		if codeOf(err) != "500" {
			// A type that decodes itself refused its value for a reason
			// with a status of its own (a schema nesting over its limit:
			// 413): keep it.
			return fmt.Errorf("request body: %w", err)
		}
		return badRequest("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("trailing data after the JSON object")
	}
	return nil
}

// fieldList names the JSON fields of a request type: "root, path, min_seq".
func fieldList(v any) string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.NumField() == 0 {
		return "(none)"
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return strings.Join(names, ", ")
}

// unknownFieldAt finds the object of a request body holding the unknown
// key encoding/json's error names: the object's path ("" for the request
// itself, "def", "caps[0]") and the fields of the struct it decodes into.
// A type that decodes itself (json.Unmarshaler) is not looked into.
func unknownFieldAt(data []byte, t reflect.Type, jsonErr string) (at, fields string, ok bool) {
	key, err := strconv.Unquote(strings.TrimPrefix(jsonErr, "json: unknown field "))
	if err != nil {
		return "", "", false
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return "", "", false
	}
	return unknownIn(v, t, "", key)
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func unknownIn(v any, t reflect.Type, at, key string) (string, string, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return "", "", false
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, isObj := v.(map[string]any)
		if !isObj {
			return "", "", false
		}
		byName := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			byName[strings.ToLower(name)] = f.Type // encoding/json matches keys without case
		}
		for _, k := range sortedKeys(obj) {
			ft, known := byName[strings.ToLower(k)]
			if !known {
				if k == key {
					return at, fieldList(reflect.New(t).Interface()), true
				}
				continue
			}
			if a, f, found := unknownIn(obj[k], ft, join(at, k), key); found {
				return a, f, true
			}
		}
	case reflect.Slice, reflect.Array:
		arr, isArr := v.([]any)
		if !isArr {
			return "", "", false
		}
		for i, e := range arr {
			if a, f, found := unknownIn(e, t.Elem(), fmt.Sprintf("%s[%d]", at, i), key); found {
				return a, f, true
			}
		}
	case reflect.Map:
		obj, isObj := v.(map[string]any)
		if !isObj {
			return "", "", false
		}
		for _, k := range sortedKeys(obj) {
			if a, f, found := unknownIn(obj[k], t.Elem(), join(at, k), key); found {
				return a, f, true
			}
		}
	}
	return "", "", false
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// jsonType names the JSON type a Go type decodes from.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return "value"
}

// validator checks a decoded request's fields before any work: every
// input the runtime would refuse as invalid is refused here with the
// field's name (400, or 413 over a size limit).
type validator interface{ validate() error }

func checkRoot(root string) error { return invalid("root", events.ValidateFingerprint(root)) }

func checkPath(field, path string) error {
	if path == "" {
		return nil
	}
	return invalid(field, events.ValidatePath(path))
}

// checkAgent checks the path of an agent a write changes: required (the
// root itself is changed only by registering a new root).
func checkAgent(path string) error { return invalid("path", events.ValidatePath(path)) }

// checkAgentOf checks the root and path fields naming a dynamic agent.
func checkAgentOf(root, path string) error {
	if err := checkRoot(root); err != nil {
		return err
	}
	return checkAgent(path)
}

func checkCapabilities(field string, caps []events.Capability) error {
	seen := map[string]bool{}
	for i, c := range caps {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := c.Validate(); err != nil {
			return invalid(f, err)
		}
		if seen[c.Key()] {
			return invalid(f, fmt.Errorf("capability %s %q appears twice", c.Kind, c.Name))
		}
		seen[c.Key()] = true
	}
	return nil
}

func checkTasks(field string, tasks []events.TaskDef) error {
	seen := map[string]bool{}
	for i, t := range tasks {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := t.Validate(); err != nil {
			return invalid(f, err)
		}
		if seen[t.Name] {
			return invalid(f, fmt.Errorf("task %q appears twice", t.Name))
		}
		seen[t.Name] = true
	}
	return nil
}

func (r *RegisterRootRequest) validate() error { return invalid("def", r.Def.Validate()) }

func (r *CreateRequest) validate() error {
	if err := checkRoot(r.Root); err != nil {
		return err
	}
	if err := checkPath("parent", r.Parent); err != nil {
		return err
	}
	if err := invalid("name", events.ValidateSegment(r.Name)); err != nil {
		return err
	}
	if err := checkCapabilities("caps", r.Capabilities); err != nil {
		return err
	}
	return checkTasks("tasks", r.Tasks)
}

func (r *GrantRequest) validate() error {
	if err := checkAgentOf(r.Root, r.Path); err != nil {
		return err
	}
	return invalid("cap", r.Capability.Validate())
}

func (r *RevokeRequest) validate() error {
	if err := checkAgentOf(r.Root, r.Path); err != nil {
		return err
	}
	switch r.Kind {
	case events.KindModule, events.KindFunc, events.KindType:
	default:
		return invalid("kind", fmt.Errorf("%q is not one of module, fn, type", r.Kind))
	}
	if err := invalid("name", events.Capability{Kind: r.Kind, Name: r.Name}.Validate()); err != nil {
		return err
	}
	return checkMembers(r)
}

// checkMembers checks a member-level revoke's list: present means at
// least one member, each a literal name, none twice, at most
// events.MaxPatterns.
func checkMembers(r *RevokeRequest) error {
	if r.Members == nil {
		return nil
	}
	if len(r.Members) == 0 {
		return invalid("members", errors.New("an empty list revokes nothing: name at least one member, or omit members to revoke the whole capability"))
	}
	seen := make(map[string]bool, len(r.Members))
	for i, m := range r.Members {
		f := fmt.Sprintf("members[%d]", i)
		if err := (events.RevokedData{Kind: r.Kind, Name: r.Name, Members: []string{m}}).Validate(); err != nil {
			return invalid(f, err)
		}
		if seen[m] {
			return invalid(f, fmt.Errorf("member %q appears twice", m))
		}
		seen[m] = true
	}
	return invalid("members", events.RevokedData{Kind: r.Kind, Name: r.Name, Members: r.Members}.Validate())
}

func (r *MigrateRequest) validate() error {
	if err := invalid("from", events.ValidateFingerprint(r.From)); err != nil {
		return err
	}
	if err := invalid("to", events.ValidateFingerprint(r.To)); err != nil {
		return err
	}
	if r.From == r.To {
		return invalid("to", fmt.Errorf("%.12s is the root migrated from: name the new root's fingerprint (what root.register answered for it)", r.To))
	}
	return nil
}

func (r *ToolsRequest) validate() error {
	if err := checkRoot(r.Root); err != nil {
		return err
	}
	return checkPath("path", r.Path)
}

func (r *DefineTaskRequest) validate() error {
	if err := checkAgentOf(r.Root, r.Path); err != nil {
		return err
	}
	return invalid("task", r.Task.Validate())
}

func (r *RetireRequest) validate() error { return checkAgentOf(r.Root, r.Path) }

func (r *ReadRequest) validate() error {
	if err := checkRoot(r.Root); err != nil {
		return err
	}
	if err := checkPath("path", r.Path); err != nil {
		return err
	}
	if err := checkPath("after", r.After); err != nil {
		return err
	}
	if r.Limit < 0 {
		return invalid("limit", fmt.Errorf("%d is negative: want 1..%d, or 0 for %d", r.Limit, maxListPage, maxListPage))
	}
	return nil
}

func (r *ResolveRequest) validate() error {
	_, err := agent.ParseTaskRef(r.Ref)
	return invalid("ref", err)
}

func (r *InvokeRequest) validate() error {
	_, err := agent.ParseTaskRef(r.Ref)
	return invalid("ref", err)
}

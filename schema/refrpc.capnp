# RefRPC v0.1 wire schema: the field-level specification of every message.
#
# How to read this file
# ---------------------
# Every struct and field is described from the point of view of the peer that
# SENDS it: "I" is the sender, "you" is the receiver named in the Envelope. The
# prose specification (spec/) explains the rules; the requirement ids cited here
# (e.g. BOR-002) point at them. Field names are the lowerCamelCase forms of the
# snake_case names the reference implementation uses
# (pyimpl/src/refrpc/core/messages.py), and every message struct has a section
# of the same name in spec/messages.md.
#
# Framing
# -------
# One Envelope travels as one multipart ZeroMQ message. Frame 0 is the Envelope
# in the standard (unpacked, unsegmented-or-segmented) Cap'n Proto serialization.
# Frames 1..n, if any, are out-of-band payloads referenced from inside frame 0 by
# `Payload.frame` (see Payload, ZMQ-005). A sender decides per payload whether
# it goes inline or out-of-band (the reference codec puts payloads of 64 KiB
# and more out-of-band, so that large buffers are never copied into the Cap'n
# Proto message, ZMQ-006, VAL-003).
#
# Conventions used throughout
# ---------------------------
# * Identifiers are Text and opaque to everyone but their allocator (ID-004).
#   PeerId: 1..128 bytes of UTF-8 (ID-001). ObjectId, TaskId, ForwardId,
#   ActorId: 1..256 bytes (ID-003). identifiers.md ID-010 lists every id field
#   and the few that may be empty; the others are never empty. A receiver
#   treats an id that breaks these limits as a malformed message (ID-007).
# * Incarnations are UInt64, nonzero, chosen at random at process start
#   (ID-002). 0 means "not known yet" and is only legal where a field says so.
# * Optional sub-structs are modelled as a union whose first member is
#   `none :Void` and whose second member is `some :T`. Because a union defaults
#   to its first member, a message that never sets the field reads as "absent",
#   never as a default-valued T. Readers MUST check which member is set.
# * Enums: a receiver that reads an enumerant it does not know, in any enum
#   field of a message (even in a member it does not otherwise read, such as
#   the value of a stored return), rejects that one message with
#   ProtocolError(MALFORMED) (GEN-003). ErrorCode is the exception: an unknown code is a non-retryable
#   error, never a malformed message (ERR-002). Unknown fields are ignored
#   (GEN-002): Cap'n Proto gives this.
# * Integer fields hold what their type says; sizes and lengths use Int64 so that
#   -1 can say "unknown"/"to the end" where a field documents it.
# * Field defaults in this file equal the defaults of the reference
#   implementation's dataclasses, so a field an older sender never set reads as
#   the documented default.

@0x83e5fb9ecfa9f1f0;

# ============================================================== envelope

struct Envelope {
  # What I put on the wire for every message: who I am, whom I address, where the
  # message sits in our session, and the message itself (SES-001..SES-003).

  sender @0 :Text;
  # My PeerId (ID-001).

  senderIncarnation @1 :UInt64;
  # My incarnation (ID-002), never 0: you discard a message with 0 here
  # unanswered (SES-042). You discard messages from an incarnation you have
  # fenced (SES-005); a Hello from a new incarnation of a peer you know fences
  # the old one (HS-006).

  receiver @2 :Text;
  # Your PeerId (ID-001), as I know it from cluster membership.

  receiverIncarnation @3 :UInt64;
  # Your incarnation as I know it; 0 only in a Hello, before I have learned it
  # (SES-014). If it names an older incarnation of you, you answer
  # ProtocolError(DECLARED_DEAD) and discard the message (SES-006).

  seq @4 :UInt64;
  # My sequence number for this message on the session from my incarnation to
  # yours: 1, 2, 3, ... without gaps (SES-001). 0 marks a message outside the
  # session, never acknowledged or retransmitted; exactly these travel so:
  # Hello, Welcome, Heartbeat, FetchRequest, FetchChunk, and the ProtocolErrors
  # GEN-012 sends with seq 0 (answers to a Hello, DECLARED_DEAD, answers to a
  # message rejected before sequencing, answers without a live session). A
  # ProtocolError answering a Heartbeat, FetchRequest or FetchChunk of a live
  # session is sequenced, with relatedSeq 0 (GEN-012). You deliver session
  # messages exactly once, in seq order (SES-002).

  ack @5 :UInt64;
  # Cumulative acknowledgement: the highest seq I have delivered in order from
  # you on the reverse session (SES-003). Every envelope carries it, sequenced
  # or not; you drop everything up to it from your retransmission buffer
  # (SES-008).

  body :union {
    # The message. The discriminant is the message type; messages.md gives each
    # message's discriminant, and the ordinals below are the same numbers.
    #
    # Reserved discriminants: 0..63 belong to this specification (new standard
    # messages are appended in order); 64 and above are for experiments and
    # are never assigned by the specification (GEN-006). Cap'n
    # Proto unions cannot have gaps, so an experimental schema pads the union
    # with placeholder members up to 63 and puts its own messages at 64 and
    # above. A receiver that reads a discriminant it does not know answers
    # ProtocolError(UNKNOWN_MESSAGE), consumes the message's seq and keeps the
    # session (GEN-001, GEN-006); outside the session it discards it and may
    # answer (GEN-009).

    hello @6 :Hello;
    # Discriminant 0. Session setup (HS-001).

    welcome @7 :Welcome;
    # Discriminant 1. Session accepted (HS-002).

    goodbye @8 :Goodbye;
    # Discriminant 2. I am leaving cleanly (LIV-006).

    heartbeat @9 :Heartbeat;
    # Discriminant 3. I am alive; carries only the envelope's ack (LIV-001).

    protocolError @10 :ProtocolError;
    # Discriminant 4. You sent something I could not accept (ERR-001).

    submitTask @11 :SubmitTask;
    # Discriminant 5. Run a task for me (TASK-001).

    taskReply @12 :TaskReply;
    # Discriminant 6. Your task finished (TASK-005).

    cancelTask @13 :CancelTask;
    # Discriminant 7. Do not run that task (TASK-008).

    registerBorrower @14 :RegisterBorrower;
    # Discriminant 8. Record a borrower grant before I forward a ref (BOR-002),
    # or for myself (BOR-007, BOR-008).

    borrowerRegistered @15 :BorrowerRegistered;
    # Discriminant 9. The grant you asked for is recorded, or refused (BOR-003).

    releaseBorrows @16 :ReleaseBorrows;
    # Discriminant 10. I no longer hold these grants (BOR-005).

    confirmBorrow @17 :ConfirmBorrow;
    # Discriminant 11. Do you hold a grant a dead forwarder obtained? (BOR-010).

    borrowConfirmed @18 :BorrowConfirmed;
    # Discriminant 12. My answer to ConfirmBorrow (BOR-011).

    getObjectStatus @19 :GetObjectStatus;
    # Discriminant 13. Tell me about an object you own (OBJ-002).

    objectStatus @20 :ObjectStatus;
    # Discriminant 14. The state of an object I own (OBJ-004).

    addLocation @21 :AddLocation;
    # Discriminant 15. I hold a secondary copy of your object (LOC-002).

    removeLocation @22 :RemoveLocation;
    # Discriminant 16. I dropped my copy of your object (LOC-003).

    freeObjects @23 :FreeObjects;
    # Discriminant 17. Drop your copies of my objects (GC-004).

    fetchRequest @24 :FetchRequest;
    # Discriminant 18. Send me bytes of your copy (FET-001).

    fetchChunk @25 :FetchChunk;
    # Discriminant 19. Bytes of my copy, or why I cannot send them (FET-001, FET-004).

    peerDeadNotice @26 :PeerDeadNotice;
    # Discriminant 20. I declared a peer incarnation dead (LIV-004).

    createActor @27 :CreateActor;
    # Discriminant 21. Host an actor that I own (ACT-001).

    actorStatus @28 :ActorStatus;
    # Discriminant 22. The state of an actor I host (ACT-002).

    killActor @29 :KillActor;
    # Discriminant 23. Stop the actor I own that you host (ACT-006).

    introspectRequest @30 :IntrospectRequest;
    # Discriminant 24. Dump your ownership table to me (INT-001).

    introspectReply @31 :IntrospectReply;
    # Discriminant 25. My ownership table (INT-001).
  }
}

# ============================================================== shared building blocks

struct Payload {
  # A byte string I send either inside frame 0 or as a frame of its own
  # (VAL-003). The choice is mine and changes nothing about the meaning.

  union {
    inline @0 :Data;
    # The bytes themselves, inside the Cap'n Proto message.

    frame @1 :UInt32;
    # Index of the ZeroMQ frame of this multipart message that holds the bytes
    # verbatim. Frame 0 is the Envelope, so this is at least 1. Every frame after
    # frame 0 is referenced by exactly one Payload of the message; a frame index
    # out of range, referenced twice, or a frame no Payload references makes the
    # whole message malformed (ZMQ-005).
  }
}

struct RefDescriptor {
  # Everything you need to use a ref you have never seen (REF-001). The owner's
  # identity inside it is what you contact for status and borrowing (REF-002);
  # I copy it unchanged from the descriptor I received (REF-003). An empty
  # objectId or owner, or an ownerIncarnation of 0, makes the message malformed
  # (REF-004). Reference counting: receiving a descriptor does not by itself give
  # you a hold (REF-005); you hold the ref under the grant named by forwardId, or
  # under the task hold of the task (or actor creation) whose arguments carried
  # it (BOR-001, BOR-006).

  objectId @0 :Text;
  # The object's id, allocated by its owner (ID-003, ID-004).

  owner @1 :Text;
  # The owner's PeerId (ID-001). Ownership never moves (OWN-002).

  ownerIncarnation @2 :UInt64;
  # The owner's incarnation (ID-002). If you have fenced it, the ref is already
  # failed with OWNER_DIED (REF-002, FATE-001).

  ownerAddress @3 :Text;
  # Where to reach the owner (its ZeroMQ endpoint).

  sizeHint @4 :Int64 = -1;
  # The object's size in bytes (OBJ-011) if I know it, else -1.

  forwardId @5 :Text;
  # The grant under which you hold this ref: a ForwardId the owner has recorded
  # for you before I sent this descriptor (register-before-send, BOR-002), or
  # one the owner created itself when it is the sender (BOR-004); it names you
  # as borrower (BOR-020). May be empty: when you are the owner, or when the ref
  # reaches you as a SubmitTask or CreateActor argument and my submitted-task
  # hold covers it (REF-001, BOR-006). You return every non-empty forwardId made
  # out to you in ReleaseBorrows exactly once (BOR-005, BOR-019). In a value you
  # read through ObjectStatus or a fetch it is not yours: you ignore it
  # (BOR-017).
}

struct Value {
  # A serialized value plus the refs nested inside it (VAL-001, VAL-002).
  # Reference counting: whoever stores a Value holds each nested ref as
  # contained-in that value until the value is reclaimed (GC-002, GC-003).

  encoding @0 :Encoding;
  # How to read `data` (VAL-001). `pickle` only on sessions that negotiated
  # python-pickle (HS-020).

  data @1 :Payload;
  # The encoded value. For `portable`, a Cap'n Proto message whose root is a
  # Portable (single segment or segmented, standard serialization, VAL-004).

  buffers @2 :List(Payload);
  # Out-of-band buffers of the encoding (pickle protocol 5 buffers), in the
  # order the encoding numbers them (VAL-003, VAL-009). Empty for portable and
  # raw (VAL-004, VAL-008).

  nested @3 :List(RefDescriptor);
  # The refs contained in this value, in the order the encoding numbers them;
  # Portable.ref indexes this list (VAL-002). Each entry is referred to by the
  # encoding at least once (VAL-011); an index with no entry makes the value
  # (not the message) malformed, found when the value is decoded (VAL-006,
  # VAL-021).
}

enum Encoding {
  # How a Value's bytes are to be read (VAL-001).

  portable @0;
  # A Portable tree every implementation can read (VAL-004).

  raw @1;
  # Uninterpreted bytes (VAL-008).

  pickle @2;
  # Python pickle protocol 5 (VAL-009); only with feature python-pickle (HS-020).
}

struct Portable {
  # One node of a value in the portable encoding (VAL-001, VAL-004). A tree,
  # never a graph. A reader accepts nesting at least 64 levels deep and may
  # reject deeper values as malformed (VAL-007); a member it does not know makes
  # the value malformed (VAL-014).

  union {
    null @0 :Void;
    # No value (Python None).

    bool @1 :Bool;
    # A boolean.

    int64 @2 :Int64;
    # A signed integer that fits 64 bits; never truncated or wrapped (VAL-012).

    float64 @3 :Float64;
    # An IEEE 754 double, infinities and NaN included (VAL-013).

    text @4 :Text;
    # A string of valid UTF-8 (VAL-013).

    data @5 :Data;
    # A byte string.

    list @6 :List(Portable);
    # A sequence, in order.

    map @7 :List(PortableEntry);
    # A mapping with text keys, in the sender's iteration order; keys unique
    # and the order preserved (VAL-005).

    ref @8 :UInt32;
    # A nested ref: index into the enclosing Value.nested (VAL-002, VAL-006).
  }
}

struct PortableEntry {
  # One key/value pair of a Portable map.

  key @0 :Text;
  # The key: valid UTF-8, unique within its map (VAL-005, VAL-013).

  value @1 :Portable;
  # The value stored under the key.
}

enum ArgKind {
  # How I pass a task argument (TASK-002, TASK-003).

  value @0;
  # By value: `value` is set; refs nested in it reach the function as refs held
  # under the task hold (TASK-011).

  ref @1;
  # By reference: `ref` is set; you resolve it to its value before running the
  # function (TASK-002).

  shared @2;
  # As a ref the function receives and may keep (TASK-003): `ref` is set. If you
  # still hold it after the task, you self-register first (BOR-007).
}

struct Arg {
  # One argument of a task or actor constructor, passed positionally (VAL-018).
  # Exactly the member that matches `kind` is set; anything else makes the
  # message malformed (VAL-015). Reference counting: I count a submitted-task
  # hold on every ref the argument mentions (as `ref`, as `shared` or nested in
  # `value`) until the task is settled (a cancelled task keeps it until your
  # reply or your death, TASK-014), or, for CreateActor, until the actor
  # reports ActorStatus ALIVE or DEAD (for maxRestarts > 0: until it is dead for
  # good, ACT-012), or until I declare you dead and do not re-create the actor
  # elsewhere (a re-creation keeps the hold, ACT-011, BOR-006); that hold covers
  # you while you run the task or the constructor (BOR-001).

  kind @0 :ArgKind;
  # How the argument is passed.

  value :union {
    # The argument's value, for kind `value`.

    none @1 :Void;
    # Not set (kinds `ref` and `shared`).

    some @2 :Value;
    # The value.
  }

  ref :union {
    # The argument's ref, for kinds `ref` and `shared`.

    none @3 :Void;
    # Not set (kind `value`).

    some @4 :RefDescriptor;
    # The ref; its forwardId is empty, since my task hold covers you (REF-001).
  }
}

enum ErrorCode {
  # The error registry; the spec's error table gives each code's meaning and
  # what the receiver must do. Enumerants are the registry's wire names in
  # lowerCamelCase, in registry order. New codes are only ever appended; a
  # receiver treats a code it does not know as a non-retryable failure and keeps
  # message, requirement and detail, never as a malformed message (ERR-002, not
  # GEN-003).

  protocolVersion @0;
  # Your Hello's protocol major version differs from mine (HS-002).

  malformed @1;
  # Your message could not be decoded or violates the schema's rules (GEN-003, GEN-004).

  unknownMessage @2;
  # Your message type is unknown to me (GEN-001).

  wrongState @3;
  # Your message is valid but not allowed in my state (GEN-005).

  notOwner @4;
  # You asked me something only the owner can answer, and I am not the owner
  # (OBJ-007).

  unknownObject @5;
  # I never allocated / do not hold that object id (OBJ-003, OBJ-007, BOR-003,
  # FET-004).

  objectFreed @6;
  # The object has been reclaimed (OBJ-003, BOR-003, FET-004).

  objectLost @7;
  # Every copy is lost and it cannot be reconstructed (LOC-004, LIN-003).

  ownerDied @8;
  # The object's owner died (FATE-001).

  peerDied @9;
  # A peer this depended on died: a fenced borrower, an introspection target
  # (BOR-015, INT-003).

  declaredDead @10;
  # You address an incarnation of me that is declared dead (SES-006, LIV-005).

  taskFailed @11;
  # The task's function (or an actor's constructor) raised (TASK-007, ACT-001).

  workerDied @12;
  # The executor died and no retry is left (RPC-004).

  taskCancelled @13;
  # The task was cancelled (TASK-008).

  unknownFunction @14;
  # I do not know the function (TASK-006).

  actorDied @15;
  # The actor is dead (ACT-004).

  featureNotNegotiated @16;
  # You used a feature our session did not negotiate (HS-004, HS-011).

  lineageEvicted @17;
  # Reconstruction needed lineage I had evicted (LIN-005).

  resourceExhausted @18;
  # A limit of mine was reached (executor capacity, concurrent fetches, grants
  # per borrower, waits per peer, sessions); retry later (RPC-012, FET-009,
  # SEC-008, SEC-009, SEC-021). Not for a frame or
  # message over my maxFrameBytes: that is `malformed` (GEN-004).

  unrecognized @19;
  # The sender did not know the original code (ERR-002); only ever produced
  # when re-sending such an error (ERR-007), never the unknown ordinal itself.

  objectStoreFull @20;
  # A value needed room in my object store and there was none: it is at its
  # limit and nothing more could be spilled, or the value alone exceeds the
  # limit (OBJ-036). The message says what holds the memory. Not retryable as
  # such: the program frees objects or the node gets a larger limit.
}

struct ErrorInfo {
  # A typed error: a registry code plus detail for humans.

  code @0 :ErrorCode;
  # What went wrong; the code alone decides what you do (ERR-005).

  message @1 :Text;
  # One line for humans; never parsed (ERR-005).

  requirement @2 :Text;
  # The requirement id the error enforces (e.g. "GEN-004"), or empty (ERR-004).

  detail @3 :Text;
  # A remote traceback or other detail for humans; never parsed (ERR-005).
}

# ============================================================== handshake

struct Hello {
  # First message I send on a new session, with seq 0; I queue session messages
  # until your Welcome (HS-001).

  protocolMajor @0 :UInt16;
  # My protocol major version, 0 (HS-016); you accept only your own (HS-002).

  protocolMinor @1 :UInt16;
  # My protocol minor version; we both use the smaller (HS-003).

  address @2 :Text;
  # My ZeroMQ endpoint, where you reach me.

  features @3 :List(Text);
  # The features I offer, each once (HS-022); always includes "core" (HS-007).
  # Text, not an enum, so that names you do not know pass through and are
  # ignored (HS-005).

  maxFrameBytes @4 :UInt64;
  # The largest frame, and the largest whole message (all its frames), I
  # accept; at least 1 MiB (HS-012). You never send me more (ZMQ-007); a larger
  # one is discarded, answered MALFORMED only when GEN-004 says so (never when
  # my transport drops it before decoding).

  heartbeatIntervalMs @5 :UInt32;
  # How often I send heartbeats when idle (LIV-001); your failure detector
  # uses it for me (LIV-007).
}

struct Welcome {
  # My reply to your Hello when I accept the session (HS-002, HS-010), with
  # seq 0.

  protocolMajor @0 :UInt16;
  # My protocol major version (equal to yours).

  protocolMinor @1 :UInt16;
  # The minor version we both use: the smaller of ours (HS-003).

  address @2 :Text;
  # My ZeroMQ endpoint.

  features @3 :List(Text);
  # The features we both use: the intersection of both offers (HS-004).

  maxFrameBytes @4 :UInt64;
  # The largest frame, and the largest whole message, I accept; at least 1 MiB
  # (HS-012, ZMQ-007).

  heartbeatIntervalMs @5 :UInt32;
  # How often I send heartbeats when idle (LIV-001, LIV-007).
}

struct Goodbye {
  # I am leaving cleanly: run every death effect for my incarnation now, as if I
  # had died (LIV-006).

  reason @0 :Text;
  # Why, for humans; may be empty.
}

struct Heartbeat {
  # I am alive (LIV-001, LIV-002). I also send it when I owe you an ack and have
  # nothing else to send (SES-004). It has no fields: the Envelope carries the
  # ack. Sent with seq 0, never acknowledged or retransmitted (SES-007).
}

struct ProtocolError {
  # You sent something I could not accept. I name the rule you broke in
  # `error.requirement` (ERR-001, ERR-004). Never answered with a ProtocolError
  # (GEN-008); if it names a request of yours, you fail it (ERR-003).

  error @0 :ErrorInfo;
  # What was wrong. Required.

  relatedSeq @1 :UInt64;
  # The seq of your offending message, 0 if unknown or outside the session
  # (ERR-001).
}

# ============================================================== tasks

struct SubmitTask {
  # Run `function` for me. I own every return object (OWN-001); I allocated the
  # task id and return ids (TASK-001). Reference counting: I hold a
  # submitted-task ref on every ref the arguments mention until I have processed
  # your final TaskReply or settled the task otherwise (BOR-006); a task I
  # cancelled is settled at once but keeps these holds until your reply or your
  # death (TASK-014). Returns that name one id twice are malformed (VAL-030).

  taskId @0 :Text;
  # The task's id, allocated by me (ID-003).

  function @1 :Text;
  # The registered name of the function (VAL-010), or, when actorId is set, the
  # method's bare name (`add`, not `Counter.add`, ACT-010). Unknown to you: every
  # return is ERROR(UNKNOWN_FUNCTION) (TASK-006, ACT-015).

  args @2 :List(Arg);
  # The arguments, in order (VAL-018).

  returnIds @3 :List(Text);
  # The ObjectIds of the return values, allocated by me, RECOMMENDED
  # "{taskId}.r{i}" (ID-003). Your TaskReply has one ReturnValue per id, in
  # this order (TASK-010).

  maxRetries @4 :UInt32;
  # How many re-executions I allow, shared by retries and reconstructions
  # (RPC-004, RPC-009). Always 0 for an actor call, with retryExceptions false
  # and attempt 1 (ACT-017).

  retryExceptions @5 :Bool;
  # Whether a task that raised may be retried too (RPC-005).

  attempt @6 :UInt32 = 1;
  # 1 for the first execution, +1 for each retry or reconstruction; above 1 only
  # with feature recovery (HS-018). You never run the same (my incarnation,
  # taskId, attempt) twice (RPC-001).

  actorId @7 :Text;
  # For an actor method call, the actor (ACT-003); may be empty otherwise.

  actorSeq @8 :UInt64;
  # For an actor call, its position among my calls to that actor, from 1; you run
  # my calls in this order (ACT-003). 0 when actorId is empty.

  cpuDemand @9 :UInt32 = 10000;
  # The CPU slots the task takes from you while it runs, in ten-thousandths of a
  # slot: 10000 (the default, and what a message without the field means) is one
  # slot, 5000 half of one, 0 none (it starts at once, TASK-051). You start it only
  # while it fits beside your running tasks, or alone when it takes all you offer
  # (TASK-050, TASK-052). 0 for an actor call, whose demand you ignore (ACT-025).

  resources @10 :List(ResourceAmount);
  # The named resources the task takes from you while it runs, each named once
  # (TASK-054); empty (the default) takes none. A resource you do not offer in
  # that amount: every return ERROR(RESOURCE_EXHAUSTED) once its arguments are
  # resolved, without waiting for room (TASK-053, TASK-062). Empty for an actor
  # call.
}

struct ResourceAmount {
  # An amount of one named resource a task or an actor takes (TASK-030, TASK-050, ACT-026).

  name @0 :Text;
  # The resource's name, as executors offer it (`gpu`); never empty, never `CPU`
  # (CPU slots travel in SubmitTask.cpuDemand and CreateActor.cpuDemand).

  amount @1 :UInt64;
  # How much of it, in ten-thousandths (10000 = one `gpu`).
}

enum ReturnKind {
  # Where a return value is.

  inline @0;
  # In the reply, in `value` (TASK-004).

  stored @1;
  # With `location` as primary copy; `size` bytes (TASK-004, LOC-001).

  error @2;
  # The task produced an error instead, in `error` (TASK-006, TASK-007, TASK-009).
}

struct ReturnValue {
  # One return value of a task I executed, for the object id you allocated.

  objectId @0 :Text;
  # One of the task's returnIds.

  kind @1 :ReturnKind;
  # Which of the fields below carries the result.

  value :union {
    # For kind `inline`: the value. Its nested refs carry grants for you
    # (register-before-send, BOR-002, or created by me as owner, BOR-004) unless
    # you own them. For kind `error`, optionally: the exception the function
    # raised, without nested refs, for your program (TASK-018); the error decides.

    none @2 :Void;
    # Not set (kind `stored`; usually `error`).

    some @3 :Value;
    # The value.
  }

  location @4 :Text;
  # For kind `stored`: the PeerId holding the primary copy, which is always me,
  # the envelope's sender (LOC-001; any other value makes the reply malformed,
  # VAL-019); it pins the copy until you send FreeObjects (GC-005). May be empty
  # for other kinds.

  size @5 :Int64;
  # For kind `stored`: the size of its stored form in bytes (OBJ-011); below 16
  # it makes the reply malformed (VAL-019, TASK-019).

  nested @6 :List(RefDescriptor);
  # For kind `stored`: the refs nested in the stored value, so that you, the
  # owner, hold them as contained-in the return object while it lives (GC-002).
  # They carry the same grants as refs in an inline value (TASK-017).

  error :union {
    # For kind `error`: what went wrong.

    none @7 :Void;
    # Not set (kinds `inline` and `stored`).

    some @8 :ErrorInfo;
    # The error.
  }
}

struct TaskReply {
  # The task you submitted to me finished; exactly one per executed
  # (taskId, attempt) (TASK-005). I re-send the same reply if you re-send the
  # task after it finished (RPC-001).

  taskId @0 :Text;
  # Your task id.

  attempt @1 :UInt32;
  # The attempt this reply is for; you ignore replies for other attempts (RPC-006).
  # No default here (unlike SubmitTask.attempt): stored as is, not XORed.

  returns @2 :List(ReturnValue);
  # One per return id of the task, in the task's order (TASK-010); any other
  # list makes the reply MALFORMED and fails the task (TASK-019).

  retained @3 :List(RefDescriptor);
  # Refs from the task's arguments that I still hold after the task, each under
  # a grant the owner confirmed to me before I sent this reply (BOR-007). A ref
  # whose registration the owner refused is not listed (BOR-026). The forward
  # ids are my grants, not yours: you record and release nothing for them (REF-005).

  storeFreeBytes @4 :Int64 = -1;
  # The bytes my object store could still take in memory without spilling
  # anything, when I made this reply (after storing its returns): my store limit
  # less the stored forms I hold in memory; with a limit my host's peers share,
  # less what all their stores hold (OBJ-060, OBJ-065). -1: I have no store limit,
  # or do not say. For your placement only (TASK-041); you never fail anything
  # because of it (OBJ-061).
}

struct CancelTask {
  # I no longer want this task's results: do not start it, or stop it (TASK-008).

  taskId @0 :Text;
  # My task id.
}

# ============================================================== borrowing

struct RegisterBorrower {
  # To the owner: record that `borrower` holds `objectId` under `forwardId`, then
  # answer BorrowerRegistered. I keep my own hold until your answer, and send the
  # ref to the borrower only after it (register-before-send, BOR-002). I may name
  # myself as borrower (BOR-007, BOR-008), never you (BOR-025). You record me
  # as the grant's requester (BOR-012).

  objectId @0 :Text;
  # Your object.

  borrower @1 :Text;
  # The PeerId that will hold the ref (ID-001).

  borrowerIncarnation @2 :UInt64;
  # The borrower's incarnation; the grant dies with it (BOR-009).

  borrowerAddress @3 :Text;
  # Where you reach the borrower (for ConfirmBorrow, BOR-010; OWN-011).

  forwardId @4 :Text;
  # A fresh ForwardId allocated by me (ID-003, ID-008); the borrower later
  # releases the grant by this id (BOR-005).
}

struct BorrowerRegistered {
  # The owner's answer to RegisterBorrower (BOR-003).

  objectId @0 :Text;
  # The object you asked about.

  forwardId @1 :Text;
  # The grant you asked for.

  error :union {
    # Whether I recorded the grant.

    none @2 :Void;
    # Recorded: you may now send the ref.

    some @3 :ErrorInfo;
    # Refused: UNKNOWN_OBJECT or OBJECT_FREED (BOR-003), PEER_DIED (BOR-015),
    # RESOURCE_EXHAUSTED (SEC-008) or WRONG_STATE (BOR-025); never NOT_OWNER. You
    # fail that send (BOR-003).
  }
}

struct BorrowRelease {
  # The grants I release on one object.

  objectId @0 :Text;
  # Your object.

  forwardIds @1 :List(Text);
  # Exactly the grants I hold on it (BOR-005), or a grant I requested and never
  # delivered (BOR-014); each is released once (BOR-019).
}

struct ReleaseBorrows {
  # To the owner: I hold none of these refs any more (BOR-005), or I abandon
  # grants I obtained for others (BOR-014). Batched (GC-007). Reference
  # counting: you remove each listed grant; objects and grants you do not know
  # are ignored (BOR-018).

  releases @0 :List(BorrowRelease);
  # One entry per object.
}

struct ConfirmBorrow {
  # From the owner, after `forwarder` died: do you still hold the grant it
  # obtained for you? (BOR-010). You fence the forwarder before answering
  # (BOR-011), unless it is your head, which a member judges by its own session
  # only (BOR-011, CLU-034).

  objectId @0 :Text;
  # My object.

  forwardId @1 :Text;
  # The grant in question.

  forwarder @2 :Text;
  # The dead peer that requested the grant (ID-001).

  forwarderIncarnation @3 :UInt64;
  # Its incarnation, which you fence before answering (BOR-011, LIV-012).
}

struct BorrowConfirmed {
  # My answer to ConfirmBorrow (BOR-011).

  objectId @0 :Text;
  # Your object.

  forwardId @1 :Text;
  # The grant in question.

  held @2 :Bool;
  # Whether I hold the ref under this grant. False: you remove the grant
  # (BOR-011).
}

# ============================================================== objects

enum ObjectState {
  # An object's state as its owner reports it (OBJ-001).

  pending @0;
  # Not produced yet.

  ready @1;
  # Produced: value inline or at locations (OBJ-004).

  failed @2;
  # Failed; `error` says why (OBJ-004).

  freed @3;
  # Reclaimed, or released with only lineage kept (OBJ-003).

  unknown @4;
  # I never allocated this id (OBJ-003), or I know I am not its owner (OBJ-007).
}

struct GetObjectStatus {
  # To the owner: tell me about this object (OBJ-002).

  objectId @0 :Text;
  # Your object.

  wait @1 :Bool = true;
  # If true, answer only once it is settled (ready, failed, freed or unknown);
  # if false, answer at once (OBJ-005).

  relay @2 :Bool;
  # If true, I am about to fetch the value and will serve the bytes I have
  # received to other fetchers meanwhile: you may list me in `relays` (LOC-020).
}

struct ObjectStatus {
  # The owner's answer about an object (OBJ-002..OBJ-004).

  objectId @0 :Text;
  # My object.

  state @1 :ObjectState;
  # Its state.

  size @2 :Int64 = -1;
  # Its size in bytes (OBJ-011), -1 if not known.

  locations @3 :List(Text);
  # For `ready` without inline value: PeerIds holding a copy, primary first,
  # none fenced (LOC-001, OBJ-008).

  locationAddresses @4 :List(Text);
  # The endpoints of `locations`, same order and length (OBJ-008).

  value :union {
    # For `ready` small objects: the value itself.

    none @5 :Void;
    # Not included.

    some @6 :Value;
    # The value; never pickle unless python-pickle is in use (OBJ-012). Refs
    # nested in it carry no grants for you: you ignore their forwardIds and I
    # must send them empty (BOR-017); to materialize one you hold no grant for, you
    # register yourself (BOR-008).
  }

  error :union {
    # For `failed` (and `freed`/`unknown` when I explain): why.

    none @7 :Void;
    # No error.

    some @8 :ErrorInfo;
    # The error (OBJ-004; NOT_OWNER or UNKNOWN_OBJECT with `unknown`, OBJ-007).
  }
  relays @9 :List(Text);
  # For `ready` without inline value: PeerIds assembling a copy that serve the
  # bytes they have (relays), the one to try first first, never you
  # (LOC-021, FET-040). Not copies: they never keep the object ready (LOC-022).

  relayAddresses @10 :List(Text);
  # The endpoints of `relays`, same order and length (LOC-021).
}

struct AddLocation {
  # To the owner: I now hold a secondary copy of your object (LOC-002). If it is
  # not ready, you answer FreeObjects (LOC-005).

  objectId @0 :Text;
  # Your object.

  size @1 :Int64;
  # Its size in bytes (OBJ-011).
}

struct RemoveLocation {
  # To the owner: I no longer hold a copy of your object (LOC-003, GC-005).

  objectId @0 :Text;
  # Your object.
}

struct FreeObjects {
  # From the owner: drop your copies of these objects (OWN-005, GC-004), also
  # in answer to an AddLocation it cannot accept (LOC-005). Idempotent; ids you
  # do not hold are ignored.

  objectIds @0 :List(Text);
  # My objects.
}

struct FetchRequest {
  # Send me bytes [offset, offset+length) of the stored form (OBJ-010) of your
  # copy of an object (FET-001). Sent with seq 0 (FET-005). To resume, I send a
  # new request from the first missing offset (FET-002).

  objectId @0 :Text;
  # The object.

  requestId @1 :UInt64;
  # My id for this request, never reused (FET-012), echoed in every chunk.

  offset @2 :UInt64;
  # The first byte I want; beyond the end: one chunk with error MALFORMED
  # (FET-014).

  length @3 :Int64 = -1;
  # How many bytes; -1 means to the end, below -1 is MALFORMED (FET-014). A
  # fetcher SHOULD ask at most 8 MiB per request, first or resume (FET-015); a
  # holder serves any length of -1 or more, larger ones included (FET-014).

  chunkBytes @4 :UInt64 = 1048576;
  # The most bytes of data per FetchChunk, before compression; at least 1 and at
  # most my maxFrameBytes minus 64 KiB (FET-007). The default is not a minimum;
  # you use smaller chunks when my maxFrameBytes needs it.

  acceptLz4 @5 :Bool;
  # Whether you may lz4-compress chunks; only if lz4 was negotiated (FET-003,
  # HS-021).
}

struct FetchChunk {
  # One chunk of the bytes you asked for, or why I cannot send them (FET-001,
  # FET-004). Sent with seq 0 (FET-005). My chunks cover your range; the final
  # one has `last`. The whole message fits your maxFrameBytes (FET-007).

  objectId @0 :Text;
  # The object.

  requestId @1 :UInt64;
  # Your FetchRequest's id.

  offset @2 :UInt64;
  # Offset of this chunk's first byte in the (uncompressed) stored form
  # (OBJ-010).

  totalSize @3 :Int64;
  # The size of the whole stored form in bytes (OBJ-011, FET-010); never -1. In
  # an error chunk that answers a request before any data chunk: the size if I
  # have a copy and know its size, else 0 (a relay still assembling its copy
  # sends 0, FET-062); in an error chunk that ends a request after data chunks:
  # the size those data chunks carried (FET-004). You never read it from an
  # error chunk (FET-004).

  last @4 :Bool;
  # True on the final chunk of the request.

  lz4 @5 :Bool;
  # Whether `data` is one LZ4 frame, compressed independently of other chunks
  # (FET-003, FET-008).

  data @6 :Payload;
  # The bytes, at most your chunkBytes before compression, except that chunks are
  # at least 1 KiB (FET-020; the last chunk of a range may be shorter) and fit
  # your maxFrameBytes (FET-007). Large chunks travel out-of-band (VAL-003).

  error :union {
    # Whether I can serve the request.

    none @7 :Void;
    # Yes.

    some @8 :ErrorInfo;
    # No, in a single chunk with `last` and empty `data`: OBJECT_FREED or
    # UNKNOWN_OBJECT (FET-004, FET-043), RESOURCE_EXHAUSTED (FET-009) or MALFORMED
    # (FET-014); a reader takes any other code (OBJECT_STORE_FULL included,
    # FET-066) as these but RESOURCE_EXHAUSTED: this source failed, go on with the
    # next source of the same answer, and ask the owner again only when none is
    # left (FET-041).
  }
}

struct PeerDeadNotice {
  # I have declared this peer incarnation dead by my own detection; fence it and
  # run its death effects, without sending notices of your own (LIV-004,
  # LIV-008). If it names you, you ignore it (LIV-019): you learn of your own
  # death only from a peer that fenced you (LIV-005). A member ignores one that
  # names its cluster's head (LIV-030, CLU-034).

  peer @0 :Text;
  # The dead PeerId.

  incarnation @1 :UInt64;
  # Its incarnation.

  reason @2 :Text;
  # Why, for humans.
}

# ============================================================== actors

struct CreateActor {
  # Host an actor of `className`; I own it (OWN-001, ACT-001).

  actorId @0 :Text;
  # The actor's id, allocated by me (ID-003).

  className @1 :Text;
  # The registered name of the class to instantiate (VAL-010).

  args @2 :List(Arg);
  # The constructor's arguments, in order (VAL-018). They are covered exactly
  # like SubmitTask arguments: I keep a submitted-task hold on every ref they
  # mention until you report ActorStatus (alive or dead; for maxRestarts > 0,
  # until the actor is dead for good, ACT-012), or until I declare you dead and
  # do not re-create the actor elsewhere (a re-creation keeps the hold, ACT-011,
  # BOR-006), and their forwardIds are empty (REF-001). For every ref the
  # actor keeps, you register yourself as its borrower before you report alive
  # (BOR-007).

  maxRestarts @3 :UInt32;
  # How often I may re-create the actor on another host after its host dies
  # (ACT-011); you never restart it yourself (ACT-002).

  maxConcurrency @4 :UInt32;
  # How many of the actor's method calls you may run at once; 0 (the default,
  # what a sender that predates this field sends) means 1 (ACT-013). You start
  # each caller's calls in actorSeq order whatever this is (ACT-003); with more
  # than 1 they may finish, and be answered, in any order (ACT-018).

  cpuDemand @5 :UInt32;
  # The CPU slots the actor takes from you for its whole life, in ten-thousandths
  # of a slot, as SubmitTask.cpuDemand counts them (TASK-050): 0 (the default,
  # and what a sender that predates this field means) takes none. You hold it
  # from the constructor's start until the actor is dead, beside your running
  # tasks; a creation that does not fit waits its turn (ACT-026, ACT-027).

  resources @6 :List(ResourceAmount);
  # The named resources the actor takes from you for its whole life, each named
  # once (TASK-054); empty (the default) takes none. A resource you do not offer
  # in that amount: ActorStatus(DEAD) with RESOURCE_EXHAUSTED once its arguments
  # are resolved, without waiting for room or running the constructor (ACT-028,
  # ACT-039).
}

enum ActorState {
  # An actor's state as its host reports it (ACT-002).

  alive @0;
  # Running and accepting calls.

  restarting @1;
  # Reserved: never sent in version 0.1, where only the owner re-creates an
  # actor (ACT-002, ACT-011).

  dead @2;
  # Gone for good; calls fail with ACTOR_DIED (ACT-004).
}

struct ActorStatus {
  # To the actor's owner: the actor I host changed state (ACT-001, ACT-002, ACT-006).

  actorId @0 :Text;
  # Your actor.

  state @1 :ActorState;
  # Its new state.

  error :union {
    # Why it died, if it did.

    none @2 :Void;
    # No error.

    some @3 :ErrorInfo;
    # The error.
  }
}

struct KillActor {
  # From the actor's owner: stop the actor and answer ActorStatus(dead) (ACT-006).

  actorId @0 :Text;
  # My actor.
}

# ============================================================== introspection

struct IntrospectRequest {
  # Dump your ownership table to me (INT-001); you may answer with no entries
  # (INT-002).

  requestId @0 :UInt64;
  # My id for the request, echoed in the reply.

  summary @1 :Bool;
  # Also send me your PeerSummary (INT-006); you may then leave `entries` empty
  # (INT-007). False (the default): the table only.
}

struct IntrospectReply {
  # My ownership table, one entry per object I own or borrow (INT-001). A
  # snapshot: it changes no counter of yours (INT-004).

  requestId @0 :UInt64;
  # Your request's id.

  entries @1 :List(TableEntry);
  # The entries; none, with `summary` set, when you asked for my summary
  # (INT-007) or when the listing would exceed your maxFrameBytes (ZMQ-023):
  # empty entries with a summary always mean "not listed", never "no entries".

  summary :union {
    # What I am doing, counted (INT-006).

    none @2 :Void;
    # You did not ask for it, or I do not make one (INT-008): you know nothing of it.

    some @3 :PeerSummary;
    # My summary, as it is when I handle your request.
  }
}

struct PeerSummary {
  # What I am doing, counted (INT-006): for status tools and cluster views. A
  # snapshot, like the table: it changes no counter of yours (INT-004). Each
  # count list names every state with at least one entry once, in ascending byte
  # order of the state name, and no state with none (INT-009).

  ownedTasks @0 :List(StateCount);
  # Tasks I submitted and still keep, by my owner-task state (`queued`,
  # `submitted`, `finished`, `failed`, `cancelled`; state-machines.md).

  executingTasks @1 :List(StateCount);
  # Tasks I execute for their owners and still keep, by my executor-task state
  # (`resolving`, `running`, `registering`, `replied`).

  hostedActors @2 :List(ActorEntry);
  # Actors whose instance I host (ACT-001); `peer` names each one's owner.

  ownedActors @3 :List(ActorEntry);
  # Actors I created and still keep; `peer` names each one's host.

  ownedObjects @4 :UInt64;
  # Entries of my ownership table I own (the table's owner rows).

  borrowedObjects @5 :UInt64;
  # Refs I hold to objects others own (the table's borrower rows).
}

struct StateCount {
  # How many entries are in one state.

  state @0 :Text;
  # The state's name, as the spec's state machines name it.

  count @1 :UInt64;
  # At least 1.
}

struct ActorEntry {
  # One actor in a PeerSummary.

  actorId @0 :Text;
  # The actor (ActorId).

  peer @1 :Text;
  # Its owner (in hostedActors) or its host (in ownedActors): a PeerId, empty if
  # I do not know it yet.

  state @2 :Text;
  # My state name for it, in lowercase: in ownedActors `pending` (no ActorStatus
  # yet), `alive`, `restarting` (being re-created, ACT-011) or `dead`; in
  # hostedActors `starting` (its constructor has not finished: its arguments
  # are being resolved, it waits for room, ACT-027, or it runs), `alive` or
  # `dead` (INT-006).

  className @3 :Text;
  # The name the actor was created with (CreateActor.className), empty if I do not
  # know it.
}

struct TableEntry {
  # One row of my ownership table (OWN-003, GC-001). Counters are signed so that
  # a buggy negative count shows up in a dump instead of failing to encode.

  objectId @0 :Text;
  # The object.

  owner @1 :Text;
  # Its owner's PeerId.

  role @2 :Text;
  # "owner" or "borrower": my role for it.

  state @3 :Text;
  # My state name for it (spec state machines).

  localRefs @4 :Int64;
  # Refs my own program holds (OWN-003).

  submittedTaskRefs @5 :Int64;
  # Pending tasks of mine that mention it (BOR-006).

  containedIn @6 :List(Text);
  # Ids of objects I own whose value embeds it (GC-002), each container once
  # however often its value names it (a set, OWN-003), in the order the holds
  # were taken; a reader compares it as a set (INT-010).

  borrowers @7 :List(Text);
  # As owner: PeerIds holding grants, each once, in ascending byte order
  # (BOR-003, INT-005).

  locations @8 :List(Text);
  # PeerIds holding copies, primary first (LOC-001, INT-005); in a borrower
  # row, the locations the owner last reported (INT-010).

  lineageRefs @9 :Int64;
  # As owner: entries whose producing task is reconstructable and mentions it
  # in its arguments: a ref or shared argument, or nested in a value argument
  # (LIN-002).

  size @10 :Int64;
  # Its size in bytes (OBJ-011), -1 if not known; in a borrower row, the size
  # the owner last reported (INT-010).

  spilled @11 :Bool;
  # True when I hold a copy of it in my own object store and that copy is
  # spilled to disk (OBJ-031): still a location that serves fetches (OBJ-032),
  # restored before I use it (OBJ-033). False when my copy is in memory, when I
  # hold none, or when I do not say (INT-020).
}

# ============================================================== traces

struct TraceRecord {
  # One record of the canonical trace format that any implementation can emit,
  # so the same inspector reads every implementation's traces. A trace is a
  # sequence of TraceRecord messages written back to back, each in the standard
  # unpacked serialization with its own segment table (standard Cap'n Proto
  # stream framing), describing exactly one peer incarnation (TRC-001), and
  # starting with a `header` record (TRC-002). A reader uses every complete
  # record before an incomplete last one (TRC-012). A `send` record and a `recv`
  # record are paired by their envelopes only, never by time (TRC-006): a
  # sequenced message (seq > 0) by the same (sender, senderIncarnation,
  # receiver, receiverIncarnation, seq); a message outside the session (seq 0)
  # by the same (sender, senderIncarnation, receiver, receiverIncarnation) and
  # bodies equal field by field, never by comparing bytes (TRC-014), in order
  # (trace-format.md section 3).

  peer @0 :Text;
  # The PeerId of the peer writing the trace.

  incarnation @1 :UInt64;
  # Its incarnation (ID-002).

  recordNo @2 :UInt64;
  # Position of this record in the writer's trace: 0 for the header, then 1,
  # 2, ... without gaps (TRC-004).

  monotonicNs @3 :UInt64;
  # The writer's monotonic clock in nanoseconds, never decreasing (TRC-004);
  # comparable only within one trace.

  kind @4 :Kind;
  # What this record describes.

  enum Kind {
    # The kinds of trace record.

    send @0;
    # I sent `envelope` to remotePeer; one record per transmission, so a
    # retransmission is a new record (TRC-003).

    recv @1;
    # I received `envelope` from remotePeer: one record per frame 0, duplicates,
    # discarded messages and frames that do not decode included (TRC-003,
    # TRC-010).

    event @2;
    # Something happened inside me: eventName, with objectId/taskId/detail
    # (TRC-008).

    header @3;
    # The first record of a trace and only that one: protocolMajor,
    # protocolMinor, implementation (TRC-002).
  }

  remotePeer @5 :Text;
  # For send/recv: the other peer's PeerId, agreeing with `envelope` (TRC-005).

  remoteIncarnation @6 :UInt64;
  # For send/recv: the other peer's incarnation (0 if not known yet, as in a
  # Hello), agreeing with `envelope` (TRC-005).

  seq @7 :UInt64;
  # For send/recv: the envelope's seq, copied for cheap pairing (TRC-005).

  envelope @8 :Data;
  # For send/recv: frame 0 of the message byte for byte as it went on the wire
  # (an encoded Envelope), also when it does not decode (TRC-010). Out-of-band
  # frames are not recorded (TRC-005).

  eventName @9 :Text;
  # For event: what happened, a name from the spec's event registry or one
  # beginning with "x-" (TRC-007).

  objectId @10 :Text;
  # For event: the object concerned, or empty.

  taskId @11 :Text;
  # For event: the task concerned, or empty.

  detail @12 :Text;
  # For any kind: empty, or the text of a JSON object (UTF-8) with further
  # fields, keys per the event registry; readers ignore keys they do not know.
  # A record caused by a stimulus should carry the stimulus's id under the
  # key "cause" (TRC-009).

  protocolMajor @13 :UInt16;
  # For header: the protocol major version the writer speaks.

  protocolMinor @14 :UInt16;
  # For header: the protocol minor version the writer speaks.

  implementation @15 :Text;
  # For header: the writer's implementation name and version, for example
  # "refrpc-py/0.1.0" (TRC-002).
}

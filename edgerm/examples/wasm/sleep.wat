;; sleep.wat: a WASI command that runs forever without using the CPU. It sleeps
;; 100 ms at a time (poll_oneoff on the monotonic clock), so a kill delivered
;; through the engine's epoch stops it within about 100 ms.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; A subscription at 0 (48 bytes): userdata u64, tag u8 = 0 (clock) at 8,
  ;; clock id u32 at 16, timeout u64 (ns) at 24, precision u64 at 32, flags u16 at 40.
  ;; The event is written at 64, the event count at 128.
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 100000000))
    (loop $forever
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (br $forever))))

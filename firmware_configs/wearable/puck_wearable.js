// Veille wearable firmware for an Espruino Puck.js v2, worn at the waist on a belt clip.
// Streams 3-axis acceleration (milli-g, 50 Hz) over a GATT notify characteristic and turns
// the button into "I'm fine" (short press) and "help" (press held >= 2 s).
// Frame format, UUIDs and flashing: FRAME.md next to this file. Keep the two in step.

var SERVICE = "a0e5f000-7e11-4e1a-8f00-5645494c4c45";
var FRAME_CHAR = "a0e5f001-7e11-4e1a-8f00-5645494c4c45";
var VERSION = 1;
var TYPE_ACCEL = 0, TYPE_BUTTON = 1;
var SAMPLES_PER_FRAME = 8;   // 3 + 8*6 = 51 bytes: needs an ATT MTU >= 54 (see FRAME.md)
var MG_PER_LSB = 0.488;      // LSM6DS3TR-C at +-16 g
var LONG_PRESS_MS = 2000;
var OUT_HZ = 50, CHIP_HZ = 52;
// Sensor axes -> frame axes. Frame: y points down (feet) when the wearer stands, like the
// SisFall sensor; x to the wearer's left, z out of the belly. Index and sign per frame axis.
var AXIS_MAP = [[0, 1], [1, -1], [2, 1]];

var frame = new Int16Array(SAMPLES_PER_FRAME * 3);
var nInFrame = 0;
var sampleNo = 0;      // index of the next sample sent, modulo 65536
var pressNo = 0;
var phase = 0;         // 52 Hz -> 50 Hz: keep 50 samples out of every 52
var connected = false;

function u16le(v) { return [v & 0xFF, (v >> 8) & 0xFF]; }

function notify(bytes) {
  if (!connected) return;
  try {
    NRF.updateServices({ [SERVICE]: { [FRAME_CHAR]: { value: bytes, notify: true } } });
  } catch (e) { /* a full TX queue drops this frame: the gateway counts the gap */ }
}

function sendAccel() {
  var first = (sampleNo - nInFrame) & 0xFFFF;
  var head = [(VERSION << 4) | TYPE_ACCEL].concat(u16le(first));
  var body = new Uint8Array(frame.buffer, 0, nInFrame * 6);
  notify(head.concat(Array.prototype.slice.call(body)));
  nInFrame = 0;
}

Puck.on('accel', function (d) {
  phase += OUT_HZ;
  if (phase < CHIP_HZ) return;   // drop 2 samples out of 52
  phase -= CHIP_HZ;
  var raw = [d.acc.x, d.acc.y, d.acc.z];
  for (var i = 0; i < 3; i++) {
    var m = AXIS_MAP[i];
    frame[nInFrame * 3 + i] = Math.round(raw[m[0]] * m[1] * MG_PER_LSB);
  }
  nInFrame++;
  sampleNo = (sampleNo + 1) & 0xFFFF;
  if (nInFrame === SAMPLES_PER_FRAME) sendAccel();
});

setWatch(function (e) {
  var held = (e.time - e.lastTime) * 1000;
  pressNo = (pressNo + 1) & 0xFFFF;
  var kind = held >= LONG_PRESS_MS ? 2 : 1;   // 1 = I'm fine (cancel), 2 = help (sos)
  notify([(VERSION << 4) | TYPE_BUTTON].concat(u16le(pressNo), [kind]));
  digitalPulse(kind === 2 ? LED1 : LED2, 1, 300);   // red: help sent, green: cancel sent
}, BTN, { edge: "falling", repeat: true, debounce: 50 });

NRF.on('connect', function () { connected = true; });
NRF.on('disconnect', function () { connected = false; nInFrame = 0; });

function start() {
  NRF.setServices({
    [SERVICE]: {
      [FRAME_CHAR]: { value: [0, 0, 0, 0], maxLen: 3 + SAMPLES_PER_FRAME * 6,
                      notify: true, readable: true, description: "Veille frames" }
    }
  }, { advertise: [SERVICE], uart: true, battery: true });
  NRF.setAdvertising({}, { name: "Veille Puck", interval: 500 });
  Puck.accelOn(52);
  Puck.accelWr(0x10, 0x34);   // CTRL1_XL: ODR 52 Hz, full scale +-16 g
}

E.on('init', start);
start();

// Microphone capture for the softphone, on the audio thread: resample whatever rate the device runs at to
// 16 kHz mono, convert to PCM16 and post one 20 ms frame (320 samples = 640 bytes) at a time.
//
// Downsampling is a windowed-sinc low-pass (cut-off 0.45 x 16 kHz, so nothing above 7.2 kHz folds back into the
// band Whisper listens to) followed by linear interpolation; done here rather than on the main thread so a busy
// page cannot drop microphone audio.

function designLowpass(cutoff, taps) {
  // cutoff in cycles per input sample (0..0.5); Hamming-windowed sinc, normalised to unity gain at DC.
  const h = new Float32Array(taps);
  const m = (taps - 1) / 2;
  let sum = 0;
  for (let k = 0; k < taps; k++) {
    const x = k - m;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.54 - 0.46 * Math.cos((2 * Math.PI * k) / (taps - 1));
    h[k] = sinc * w;
    sum += h[k];
  }
  for (let k = 0; k < taps; k++) h[k] /= sum;
  return h;
}

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.targetRate = o.targetRate || 16000;
    this.frameSamples = o.frameSamples || 320;
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.taps = this.step > 1 ? designLowpass((0.45 * this.targetRate) / sampleRate, 31) : Float32Array.of(1);
    this.history = new Float32Array(this.taps.length);
    this.head = 0;
    this.n = 0; // index of the input sample being filtered, relative to the current block
    this.next = 0; // fractional input position of the next output sample
    this.prev = 0; // previous filtered sample (for interpolation)
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.peak = 0;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.frame[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    const a = Math.abs(s);
    if (a > this.peak) this.peak = a;
    if (this.fill === this.frameSamples) {
      const buffer = this.frame.buffer;
      this.port.postMessage({ pcm: buffer, level: this.peak }, [buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.fill = 0;
      this.peak = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    const channel = input && input[0];
    if (!channel) return true;
    const taps = this.taps;
    const nt = taps.length;
    for (let i = 0; i < channel.length; i++) {
      this.history[this.head] = channel[i];
      let acc = 0;
      let idx = this.head;
      for (let k = 0; k < nt; k++) {
        acc += taps[k] * this.history[idx];
        idx = idx === 0 ? nt - 1 : idx - 1;
      }
      this.head = (this.head + 1) % nt;
      // Output samples whose position falls between the previous filtered sample (n - 1) and this one (n).
      while (this.next <= this.n) {
        const frac = this.next - (this.n - 1);
        this.emit(this.prev + (acc - this.prev) * frac);
        this.next += this.step;
      }
      this.prev = acc;
      this.n += 1;
    }
    // Keep positions small so floating-point error cannot grow over a long call.
    this.next -= this.n;
    this.n = 0;
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);

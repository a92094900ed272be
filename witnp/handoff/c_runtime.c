/* witnp C reference runtime: the integer engine's arithmetic (witnp/handoff/engine.py, int_ops.py) in C99.
 * Codes are int64 (int64_t); weights int8; no allocation, no floating point but the input quantization. */

static int64_t w_floor_shr(int64_t v, int k) { /* floor(v / 2^k), k >= 0, for any sign */
    return v >= 0 ? (v >> k) : -(((-v) - 1) >> k) - 1;
}

static int64_t w_shift_round(int64_t v, int k) { /* R(v * 2^k): a left shift, or a right one half to even */
    int64_t q, r, half;
    if (k >= 0) return v * ((int64_t)1 << k);
    q = w_floor_shr(v, -k);
    r = v - q * ((int64_t)1 << -k);
    half = (int64_t)1 << (-k - 1);
    return q + ((r > half) || (r == half && (q & 1)));
}

static int64_t w_clip(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

static int64_t w_rq(int64_t v, int k, int fl) { /* an array's requantization v * 2^k: R, or floor when fl */
    if (!fl || k >= 0) return w_shift_round(v, k);
    return w_floor_shr(v, -k);
}

static int64_t w_div_round_even(int64_t s, int64_t n) { /* R(s / n), an exact rational, half to even */
    int64_t fl = s >= 0 ? s / n : -((-s + n - 1) / n);
    int64_t r2 = 2 * (s - fl * n);
    return fl + ((r2 > n) || (r2 == n && (fl & 1)));
}

/* the input of an op: codes c at scale 2^-(log2 s) rescaled by 2^k, or the float network input times sx */
static int64_t w_in(const int64_t *c, const float *xf, int i, int k, float sx) {
    if (xf) return (int64_t)nearbyintf(xf[i] * sx);
    return w_shift_round(c[i], k);
}

/* Linear rules (chip.md 2-3) on `rows` rows of K inputs: FALSE (unsigned, + shift for Shift) or PN, the
 * 9-12-bit split when split; w (O, K) int8; y clipped to [lo, hi] then [lo2, hi2]. sp, sn: K codes of scratch
 * (a row's input codes, made once per row). */
static void w_linear(int64_t *y, int64_t *sp, int64_t *sn, const int64_t *c, const float *xf, int rows, int K,
                     int O, int k, float sx,
                     const int8_t *w, const int32_t *b, const int32_t *bd, int pn, int64_t shift, int64_t xhi,
                     int split, int e, int g, int64_t lo, int64_t hi, int64_t lo2, int64_t hi2, int fl) {
    int r, o, i;
    for (r = 0; r < rows; r++) {
        for (i = 0; i < K; i++) {
            int64_t u = w_in(c, xf, r * K + i, k, sx);
            if (pn) { sp[i] = w_clip(u > 0 ? u : 0, 0, xhi); sn[i] = w_clip(u < 0 ? -u : 0, 0, xhi); }
            else { sp[i] = w_clip(u + shift, 0, xhi); sn[i] = 0; }
        }
        for (o = 0; o < O; o++) {
            int64_t acc = 0, accd = 0;
            for (i = 0; i < K; i++) {
                int64_t p = sp[i], n = sn[i], wv = w[o * K + i];
                if (split) { acc += ((p & 255) - (n & 255)) * wv; accd += ((p >> 8) - (n >> 8)) * wv; }
                else acc += (p - n) * wv;
            }
            if (split) {
                int64_t yl = w_clip(w_rq(acc + b[o], e, fl), lo, hi);
                int64_t yd = w_rq(256 * accd + bd[o], -g, fl);
                y[r * O + o] = w_clip(yl + yd, lo2, hi2);
            } else {
                y[r * O + o] = w_clip(w_clip(w_rq(acc + b[o], e, fl), lo, hi), lo2, hi2);
            }
        }
    }
}

/* input codes of a convolution into pos (and neg for PN): signed (Conv2d FALSE), unsigned + shift, or PN */
static void w_conv_codes(int64_t *pos, int64_t *neg, const int64_t *c, const float *xf, int n, int k, float sx,
                         int pn, int is_signed, int64_t shift, int64_t xlo_s, int64_t xhi_s, int64_t xhi) {
    int i;
    for (i = 0; i < n; i++) {
        int64_t u = w_in(c, xf, i, k, sx);
        if (pn) { pos[i] = w_clip(u > 0 ? u : 0, 0, xhi); neg[i] = w_clip(u < 0 ? -u : 0, 0, xhi); }
        else if (is_signed) pos[i] = w_clip(u, xlo_s, xhi_s);
        else pos[i] = w_clip(u + shift, 0, xhi);
    }
}

/* direct Conv2d on (C, H, W) codes -> (O, Ho, Wo): pos with w, neg (PN) with wn; padding holds pad (pos) or
 * 0 (neg); geometry g = [kh, kw, sh, sw, ph, pw, dh, dw, oph, opw, groups] */
static void w_conv2d(int64_t *y, const int64_t *pos, const int64_t *neg, int C, int H, int W, int O, int Ho,
                     int Wo, const int32_t *g, const int8_t *w, const int8_t *wn, const int32_t *b, int64_t pad,
                     int e, int64_t lo, int64_t hi, int int8_out, int fl) {
    int kh = g[0], kw = g[1], sh = g[2], sw = g[3], ph = g[4], pw = g[5], dh = g[6], dw = g[7], G = g[10];
    int cg = C / G, og = O / G, o, oy, ox, ci, i, j;
    for (o = 0; o < O; o++) {
        int grp = o / og;
        for (oy = 0; oy < Ho; oy++) for (ox = 0; ox < Wo; ox++) {
            int64_t acc = 0, v;
            for (ci = 0; ci < cg; ci++) for (i = 0; i < kh; i++) for (j = 0; j < kw; j++) {
                int iy = oy * sh - ph + i * dh, ix = ox * sw - pw + j * dw, cc = grp * cg + ci;
                int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
                int widx = ((o * cg + ci) * kh + i) * kw + j;
                acc += (inside ? pos[(cc * H + iy) * W + ix] : pad) * w[widx];
                if (neg && inside) acc += neg[(cc * H + iy) * W + ix] * wn[widx];
            }
            v = w_clip(w_rq(acc + b[o], e, fl), lo, hi);
            y[(o * Ho + oy) * Wo + ox] = int8_out ? w_clip(v, -128, 127) : v;
        }
    }
}

/* ConvTranspose2d (scatter form) on (Ci, H, W) codes -> (Co, Ho, Wo); w (Ci, Co/G, kh, kw) */
static void w_conv_t(int64_t *y, int64_t *acc, const int64_t *pos, const int64_t *neg, int Ci, int H, int W,
                     int Co, int Ho, int Wo, const int32_t *g, const int8_t *w, const int8_t *wn, const int32_t *b,
                     int e, int64_t lo, int64_t hi, int fl) {
    int kh = g[0], kw = g[1], sh = g[2], sw = g[3], ph = g[4], pw = g[5], dh = g[6], dw = g[7], G = g[10];
    int cig = Ci / G, cog = Co / G, c, iy, ix, i, j, oc, n = Co * Ho * Wo;
    for (i = 0; i < n; i++) acc[i] = 0;
    for (c = 0; c < Ci; c++) {
        int grp = c / cig;
        for (iy = 0; iy < H; iy++) for (ix = 0; ix < W; ix++) {
            int64_t p = pos[(c * H + iy) * W + ix], q = neg ? neg[(c * H + iy) * W + ix] : 0;
            for (i = 0; i < kh; i++) for (j = 0; j < kw; j++) {
                int oy = iy * sh + i * dh - ph, ox = ix * sw + j * dw - pw;
                if (oy < 0 || oy >= Ho || ox < 0 || ox >= Wo) continue;
                for (oc = 0; oc < cog; oc++) {
                    int widx = ((c * cog + oc) * kh + i) * kw + j;
                    acc[((grp * cog + oc) * Ho + oy) * Wo + ox] += p * w[widx] + (neg ? q * wn[widx] : 0);
                }
            }
        }
    }
    for (i = 0; i < n; i++) y[i] = w_clip(w_rq(acc[i] + b[i / (Ho * Wo)], e, fl), lo, hi);
}

/* to_linear Conv2d: the Linear rules on (kw, kh, ci)-ordered patches (padding: pad for pos, 0 for neg);
 * w (O, K) int8 with K = kw*kh*C in that order; int8 output */
static void w_conv_linear(int64_t *y, const int64_t *pos, const int64_t *neg, int C, int H, int W, int O, int Ho,
                          int Wo, const int32_t *g, const int8_t *w, const int32_t *b, const int32_t *bd, int64_t pad,
                          int split, int e, int gg, int64_t lo, int64_t hi, int fl) {
    int kh = g[0], kw = g[1], sh = g[2], sw = g[3], ph = g[4], pw = g[5], dh = g[6], dw = g[7];
    int K = kw * kh * C, o, oy, ox, i, j, ci;
    for (oy = 0; oy < Ho; oy++) for (ox = 0; ox < Wo; ox++) for (o = 0; o < O; o++) {
        int64_t acc = 0, accd = 0, v;
        int f = 0;
        for (j = 0; j < kw; j++) for (i = 0; i < kh; i++) for (ci = 0; ci < C; ci++, f++) {
            int iy = oy * sh - ph + i * dh, ix = ox * sw - pw + j * dw;
            int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
            int64_t p = inside ? pos[(ci * H + iy) * W + ix] : pad;
            int64_t n = (neg && inside) ? neg[(ci * H + iy) * W + ix] : 0;
            int64_t wv = w[o * K + f];
            if (split) { acc += ((p & 255) - (n & 255)) * wv; accd += ((p >> 8) - (n >> 8)) * wv; }
            else acc += (p - n) * wv;
        }
        if (split) {
            int64_t yl = w_clip(w_rq(acc + b[o], e, fl), lo, hi);
            v = w_clip(yl + w_rq(256 * accd + bd[o], -gg, fl), -128, 127);
        } else {
            v = w_clip(w_clip(w_rq(acc + b[o], e, fl), lo, hi), -128, 127);
        }
        y[(o * Ho + oy) * Wo + ox] = v;
    }
}

static void w_maxpool(int64_t *y, const int64_t *c, int C, int H, int W, int Ho, int Wo, int kh, int kw, int sh,
                      int sw, int ph, int pw) {
    int ch, oy, ox, i, j;
    for (ch = 0; ch < C; ch++) for (oy = 0; oy < Ho; oy++) for (ox = 0; ox < Wo; ox++) {
        int64_t m = INT64_MIN;
        for (i = 0; i < kh; i++) for (j = 0; j < kw; j++) {
            int iy = oy * sh - ph + i, ix = ox * sw - pw + j;
            if (iy >= 0 && iy < H && ix >= 0 && ix < W && c[(ch * H + iy) * W + ix] > m) m = c[(ch * H + iy) * W + ix];
        }
        y[(ch * Ho + oy) * Wo + ox] = m;
    }
}

static void w_avgpool(int64_t *y, const int64_t *c, const float *xf, int C, int H, int W, int Ho, int Wo, int kh,
                      int kw, int sh, int sw, int ph, int pw, int k, float sx, int64_t xlo, int64_t xhi, int lg,
                      int64_t lo, int64_t hi) {
    int ch, oy, ox, i, j;
    for (ch = 0; ch < C; ch++) for (oy = 0; oy < Ho; oy++) for (ox = 0; ox < Wo; ox++) {
        int64_t s = 0;
        for (i = 0; i < kh; i++) for (j = 0; j < kw; j++) {
            int iy = oy * sh - ph + i, ix = ox * sw - pw + j;
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) s += w_clip(w_in(c, xf, (ch * H + iy) * W + ix, k, sx), xlo, xhi);
        }
        y[(ch * Ho + oy) * Wo + ox] = w_clip(w_shift_round(s, -lg), lo, hi);
    }
}

/* a single-input digital op by its table: lut[(ch) * size + q - lo]; per channel on axis `ch_div` */
static void w_lut(int64_t *y, const int64_t *c, const float *xf, int n, int k, float sx, int64_t lo, int64_t hi,
                  const int32_t *lut, int size, int per_channel, int inner, int channels) {
    int i;
    for (i = 0; i < n; i++) {
        int64_t q = w_clip(w_in(c, xf, i, k, sx), lo, hi) - lo;
        int ch = per_channel ? (i / inner) % channels : 0;
        y[i] = lut[ch * size + q];
    }
}

/* Mean: out[map[i]] += q_i, then R(sum / cnt) half to even, clipped */
static void w_mean(int64_t *y, const int64_t *c, const float *xf, int n_in, int n_out, const int32_t *map, int cnt,
                   int k, float sx, int64_t xlo, int64_t xhi, int64_t lo, int64_t hi) {
    int i;
    for (i = 0; i < n_out; i++) y[i] = 0;
    for (i = 0; i < n_in; i++) y[map[i]] += w_clip(w_in(c, xf, i, k, sx), xlo, xhi);
    for (i = 0; i < n_out; i++) y[i] = w_clip(w_div_round_even(y[i], cnt), lo, hi);
}

/* the h input codes of a GRU array: PN branches or unsigned, from Q7 h by a rounding shift k */
static void w_gru_hcodes(int64_t *d, const int64_t *h, int H, int k, int pn) {
    int i;
    for (i = 0; i < H; i++) {
        if (pn) d[i] = w_clip(w_shift_round(h[i] > 0 ? h[i] : 0, k), 0, 255) - w_clip(w_shift_round(h[i] < 0 ? -h[i] : 0, k), 0, 255);
        else d[i] = w_clip(w_shift_round(h[i], k), 0, 255);
    }
}

/* one GRU step (docs/gru.md, int_ops.gru_q_int): xz, xi the frame's input codes at the zr / in scales (already
 * PN-differenced: pos - neg), h (H) the Q7 state, updated in place */
static void w_gru_step(int64_t *h, const int64_t *xz, const int64_t *xi, int I, int H, const int8_t *wzr,
                       const int8_t *win, const int8_t *whn, const int32_t *bzr, const int32_t *bin, const int32_t *bhn,
                       int ezr, int ein, int ehn, int kzr, int khn, int pn, int64_t lo, int64_t hi, int64_t ones,
                       const int32_t *lsig, const int32_t *ltanh, int64_t *scratch, int fl) {
    int64_t *hc = scratch, *yzr = scratch + H, *hc2 = scratch + 3 * H, *hnew = scratch + 4 * H;
    int o, i;
    int64_t off = -lo;
    w_gru_hcodes(hc, h, H, kzr, pn);
    for (o = 0; o < 2 * H; o++) {
        int64_t acc = 0;
        for (i = 0; i < I; i++) acc += xz[i] * wzr[o * (I + H) + i];
        for (i = 0; i < H; i++) acc += hc[i] * wzr[o * (I + H) + I + i];
        yzr[o] = w_clip(w_rq(acc + bzr[o], ezr, fl), lo, hi);
    }
    w_gru_hcodes(hc2, h, H, khn, pn);
    for (o = 0; o < H; o++) {
        int64_t acc = 0, ai = 0, yhn, yin, z, r, nn;
        for (i = 0; i < H; i++) acc += hc2[i] * whn[o * H + i];
        yhn = w_clip(w_rq(acc + bhn[o], ehn, fl), lo, hi);
        for (i = 0; i < I; i++) ai += xi[i] * win[o * I + i];
        yin = w_clip(w_rq(ai + bin[o], ein, fl), lo, hi);
        z = lsig[yzr[o] + off];
        r = lsig[yzr[H + o] + off];
        nn = ltanh[w_clip(yin + w_floor_shr(r * yhn, 7), lo, hi) + off];
        hnew[o] = w_clip(w_floor_shr((ones - z) * nn + z * h[o], 7), -128, 127);
    }
    for (o = 0; o < H; o++) h[o] = hnew[o];
}

/* the GRU's input codes of one frame for one array: (pos - neg) of R(x * sx) */
static void w_gru_xcodes(int64_t *d, const int64_t *c, const float *xf, int base, int I, int k, float sx, int pn) {
    int i;
    for (i = 0; i < I; i++) {
        int64_t u = w_in(c, xf, base + i, k, sx);
        if (pn) d[i] = w_clip(u > 0 ? u : 0, 0, 255) - w_clip(u < 0 ? -u : 0, 0, 255);
        else d[i] = w_clip(u, 0, 255);
    }
}

/* two-input digital ops on codes (engine._merge): mode 0 Add: y = clip(R((q1 + q2) * 2^ko)); 1 Mul:
 * clip(R(q1 * q2 * 2^ko)); 2 Divide: lut2[(q1 - lo) * size + q2 - lo]; q_i = clip(R(c_i * 2^k_i), lo, hi) */
static void w_merge2(int64_t *y, const int64_t *c1, const float *x1, int k1, float s1, const int64_t *c2,
                     const float *x2, int k2, float s2, int n, int64_t lo, int64_t hi, int mode, int ko,
                     int64_t ylo, int64_t yhi, const int32_t *lut2) {
    int i;
    for (i = 0; i < n; i++) {
        int64_t q1 = w_clip(w_in(c1, x1, i, k1, s1), lo, hi), q2 = w_clip(w_in(c2, x2, i, k2, s2), lo, hi);
        if (mode == 0) y[i] = w_clip(w_shift_round(q1 + q2, ko), ylo, yhi);
        else if (mode == 1) y[i] = w_clip(w_shift_round(q1 * q2, ko), ylo, yhi);
        else y[i] = lut2[(q1 - lo) * (hi - lo + 1) + q2 - lo];
    }
}

/* Cat: outer blocks of ia codes of the first operand then ib of the second, each clip(R(q * 2^ko_i)) */
static void w_cat(int64_t *y, const int64_t *c1, const float *x1, int k1, float s1, int ko1, const int64_t *c2,
                  const float *x2, int k2, float s2, int ko2, int outer, int ia, int ib, int64_t lo, int64_t hi,
                  int64_t ylo, int64_t yhi) {
    int o, i;
    for (o = 0; o < outer; o++) {
        for (i = 0; i < ia; i++)
            y[o * (ia + ib) + i] = w_clip(w_shift_round(w_clip(w_in(c1, x1, o * ia + i, k1, s1), lo, hi), ko1), ylo, yhi);
        for (i = 0; i < ib; i++)
            y[o * (ia + ib) + ia + i] = w_clip(w_shift_round(w_clip(w_in(c2, x2, o * ib + i, k2, s2), lo, hi), ko2), ylo, yhi);
    }
}

"""The IIO context of an ADALM-Pluto (rev C, AD9363, firmware v0.3x): devices, channels, attribute values.

Names, file names and ranges follow the captured context of a real Pluto (libiio's test resources):
``frequency_available [325000000 1 3800000000]``, ``sampling_frequency_available [2083333 1 61440000]``,
shared attributes in one file per channel type (``in_voltage_rf_bandwidth``), LO channels named
``TX_LO``/``RX_LO``. The behaviour behind them lives in :mod:`.ad9363`.
"""

from __future__ import annotations

from .iiod import Chan, Dev

PHY, XADC, DAC, ADC = "iio:device0", "iio:device1", "iio:device2", "iio:device3"
XO_NOMINAL_HZ = 40_000_000
MIN_RATE_NO_FIR = 2_083_333  # 25 MHz / 12


#: Attributes the driver exposes as one file per channel type (in_voltage_rf_bandwidth ...), as in the
#: captured context of a real Pluto; clients such as gr-iio address them by that file name.
SHARED_RX = frozenset({"bb_dc_offset_tracking_en", "filter_fir_en", "gain_control_mode_available",
                       "quadrature_tracking_en", "rf_bandwidth", "rf_bandwidth_available", "rf_dc_offset_tracking_en",
                       "rf_port_select_available", "sampling_frequency", "sampling_frequency_available"})
SHARED_TX = frozenset({"filter_fir_en", "rf_bandwidth", "rf_bandwidth_available", "rf_port_select_available",
                       "sampling_frequency", "sampling_frequency_available"})
SHARED_CONV = frozenset({"sampling_frequency", "sampling_frequency_available", "samples_pps"})


def pluto_devices(fs: int, rx_lo: int, tx_lo: int) -> list[Dev]:
    """The devices, channels and attribute values of an ADALM-Pluto (rev C, AD9363, firmware v0.3x)."""
    rates = {"sampling_frequency": str(fs), "sampling_frequency_available": f"[{MIN_RATE_NO_FIR} 1 61440000]"}
    rx0 = {"bb_dc_offset_tracking_en": "1", "filter_fir_en": "0", "gain_control_mode": "slow_attack",
           "gain_control_mode_available": "manual fast_attack slow_attack hybrid", "hardwaregain": "71.000000 dB",
           "hardwaregain_available": "[-3 1 71]", "quadrature_tracking_en": "1", "rf_bandwidth": "18000000",
           "rf_bandwidth_available": "[200000 1 56000000]", "rf_dc_offset_tracking_en": "1",
           "rf_port_select": "A_BALANCED", "rf_port_select_available": "A_BALANCED B_BALANCED C_BALANCED",
           "rssi": "115.00 dB", **rates}
    tx0 = {"filter_fir_en": "0", "hardwaregain": "-10.000000 dB", "hardwaregain_available": "[-89.750000 0.250000 0.000000]",
           "rf_bandwidth": "18000000", "rf_bandwidth_available": "[200000 1 40000000]", "rf_port_select": "A",
           "rf_port_select_available": "A B", "rssi": "0.00 dB", **rates}

    def lo(freq: int) -> dict[str, str]:
        return {"external": "0", "fastlock_load": "0", "fastlock_recall": "0", "fastlock_save": "0",
                "fastlock_store": "0", "frequency": str(freq), "frequency_available": "[325000000 1 3800000000]",
                "powerdown": "0"}

    phy = Dev(PHY, "ad9361-phy", [
        Chan("altvoltage1", True, lo(tx_lo), "TX_LO"), Chan("voltage0", False, rx0, shared=SHARED_RX),
        Chan("altvoltage0", True, lo(rx_lo), "RX_LO"), Chan("temp0", False, {"input": "36842"}),
        Chan("voltage0", True, tx0, shared=SHARED_TX), Chan("out", False, {"voltage_filter_fir_en": "0"}),
    ], attrs={"calib_mode": "auto", "calib_mode_available": "auto manual manual_tx_quad tx_quad rf_dc",
              "ensm_mode": "fdd", "ensm_mode_available": "sleep wait alert fdd pinctrl pinctrl_fdd",
              "filter_fir_config": "FIR Rx: 0,0 Tx: 0,0", "rx_path_rates": "", "tx_path_rates": "",
              "trx_rate_governor": "nominal", "trx_rate_governor_available": "nominal highest_osr",
              "xo_correction": str(XO_NOMINAL_HZ), "xo_correction_available": "[39992000 1 40008000]"},
        debug={"loopback": "0", "direct_reg_access": "0x0"})
    xadc = Dev(XADC, "xadc", [Chan("temp0", False, {"offset": "-2219", "raw": "2700", "scale": "123.040771484"})],
               attrs={"sampling_frequency": "961538"})
    dds = {"phase": "0", "raw": "1", "sampling_frequency": str(fs), "scale": "0.000000", "frequency": "9279985"}
    conv = {"calibphase": "0.000000", "calibscale": "1.000000", "sampling_frequency": str(fs),
            "sampling_frequency_available": f"{fs} {fs // 8} "}
    buf_attrs = {"data_available": "0", "length_align_bytes": "8", "watermark": "2048"}
    dac = Dev(DAC, "cf-ad9361-dds-core-lpc", [
        Chan("voltage0", True, dict(conv), scan=(0, "le:S16/16>>0"), shared=SHARED_CONV),
        Chan("voltage1", True, dict(conv), scan=(1, "le:S16/16>>0"), shared=SHARED_CONV),
        *(Chan(cid, True, dict(dds), name, shared=SHARED_CONV) for cid, name in (
            ("altvoltage3", "TX1_Q_F2"), ("altvoltage1", "TX1_I_F2"), ("altvoltage0", "TX1_I_F1"),
            ("altvoltage2", "TX1_Q_F1"))),
    ], debug={"direct_reg_access": "0x0"}, buffer_attrs=dict(buf_attrs))
    adc = Dev(ADC, "cf-ad9361-lpc", [
        Chan("voltage0", False, {**conv, "calibbias": "0", "samples_pps": "0"}, scan=(0, "le:S12/16>>0"),
             shared=SHARED_CONV),
        Chan("voltage1", False, {**conv, "calibbias": "0", "samples_pps": "0"}, scan=(1, "le:S12/16>>0"),
             shared=SHARED_CONV),
    ], debug={"direct_reg_access": "0x0"}, buffer_attrs=dict(buf_attrs))
    return [phy, xadc, dac, adc]

"""Header cards and tables of the simulated DRP products (COR cube, light curves, catalogue)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time
from numpy.typing import NDArray

import archi
from archi.geometry import PLATE_SCALE
from archi.io.fitswrite import Card
from archi.simulate.config import SimulationConfig
from archi.visit import GAIN_E_PER_ADU

PIPE_VER = "14.1.3"


@dataclass(frozen=True)
class Times:
    """Per-frame times in the forms the products carry."""

    mjd_tt: NDArray[np.float64]
    bjd_tdb: NDArray[np.float64]
    utc: NDArray[np.str_]

    @classmethod
    def from_mjd_tt(cls, mjd_tt: NDArray, ra: float, dec: float) -> Times:
        # geocentric light travel time: CHEOPS is within 7,000 km of the geocentre (< 25 ms)
        t = Time(mjd_tt, format="mjd", scale="tt", location=EarthLocation.from_geocentric(
            0.0, 0.0, 0.0, unit="m"))
        target = SkyCoord(ra, dec, unit="deg")
        bjd = (t.tdb + t.light_travel_time(target, kind="barycentric")).jd
        utc = np.array([s for s in t.utc.strftime("%Y-%m-%dT%H:%M:%S.%f")])
        return cls(np.asarray(mjd_tt, float), np.asarray(bjd, float), utc)


def common_cards(extname: str, level: str, stamp: str) -> list[Card]:
    return [
        ("STAMP", stamp, "program creating this HDU"),
        ("SCHEMA", f"{extname}.fsd", "filename of schema defining this data structure"),
        ("EXT_VER", "13.1", "version of the data structure"),
        ("DATA_LVL", level, "Level of this data product"),
        ("PROC_CHN", "data reduction", "Processing chain creating this data structure"),
        ("TELESCOP", "CHEOPS", "Telescope's name"),
        ("INSTRUME", "CHEOPS", "Instrument's name"),
        ("ORIGIN", "SOC", "Processing site, creating this FITS file"),
        ("ARCH_REV", 3, "Archive revision number"),
        ("PROC_NUM", 0, "Processing Number"),
        ("PIPE_VER", PIPE_VER, "Pipeline version"),
        ("TIMESYS", "TT", "Time frame system"),
        ("SIMULATD", True, f"simulated by archi {archi.__version__}"),
    ]


def visit_cards(cfg: SimulationConfig, times: Times, exptime: float, nexp: int,
                mag_target: float) -> list[Card]:
    half = exptime * nexp / 2.0 / 86400.0
    v_start = Time(times.mjd_tt[0] - half, format="mjd", scale="tt")
    v_stop = Time(times.mjd_tt[-1] + half, format="mjd", scale="tt")
    return [
        ("V_STRT_U", v_start.utc.isot + "000", "[TIMESYS=UTC] Start of validity time in UTC"),
        ("V_STOP_U", v_stop.utc.isot + "000", "[TIMESYS=UTC] End of validity time in UTC"),
        ("V_STRT_M", float(v_start.mjd), "[day] Start of validity time in MJD"),
        ("V_STOP_M", float(v_stop.mjd), "[day] End of validity time in MJD"),
        ("PI_NAME", "SIMULATION", "Name of the PI of the observing program"),
        ("PI_UID", 0, "ID of the PI"),
        ("OBS_CAT", "time critical", "Observation Category"),
        ("PROGTYPE", cfg.progtype, "Type of the program"),
        ("PROG_ID", cfg.prog_id, "Program Id of this type of program"),
        ("REQ_ID", cfg.req_id, "Observation request Id of this program"),
        ("VISITCTR", cfg.visitctr, "Visit counter for this target"),
        ("OBSID", cfg.obsid, "Unique identifier of a visit, defined by MPS"),
        ("TARGNAME", cfg.target_name, "Name of the target as provided by the proposal"),
        ("SPECTYPE", "G5V", "Spectral type of the target"),
        ("T_EFF", int(cfg.t_eff), "[Kelvin] Effective temperature of the target"),
        ("MAG_G", round(float(mag_target), 3), "[mag] Brightness of the target in Gaia band"),
        ("MAG_GERR", 0.001, "[mag] Error of brightness of the target in Gaia band"),
        ("T_STRT_U", str(times.utc[0]), "[TIMESYS=UTC] UTC of the first measurement"),
        ("T_STOP_U", str(times.utc[-1]), "[TIMESYS=UTC] UTC of the last measurement"),
        ("T_STRT_M", float(times.mjd_tt[0]), "[day] MJD of the first measurement"),
        ("T_STOP_M", float(times.mjd_tt[-1]), "[day] MJD of the last measurement"),
        ("T_STRT_B", float(times.bjd_tdb[0]), "[day] BJD of the first measurement"),
        ("T_STOP_B", float(times.bjd_tdb[-1]), "[day] BJD of the last measurement"),
        ("NEXP", int(nexp), "Number of co-added measurements"),
        ("EXPTIME", float(exptime), "[sec] Exposure time of the individual exposures"),
        ("TEXPTIME", float(exptime * nexp), "[ses] Total exposure time of stacked images"),
        ("EXPT_TYP", "executed", "Defines the type of EXPTIME and TEXPTIME"),
        ("RA_TARG", float(cfg.ra), "RA of the target at epoch J2000"),
        ("DEC_TARG", float(cfg.dec), "DEC of the target at epoch J2000"),
        ("EQUINOX", 2000.0, "Equinox of celestial coord. system"),
        ("RADESYS", "ICRS", "Coordinate reference frame for the RA and DEC"),
    ]


def image_cards(x_winoff: float, y_winoff: float) -> list[Card]:
    return [
        ("X_WINOFF", int(round(x_winoff)), "[pixel] X offset of the window in the CCD"),
        ("Y_WINOFF", int(round(y_winoff)), "[pixel] Y offset of the window in the CCD"),
        ("BUNIT", "ADU", "physical unit of the pixel values (electrons in practice)"),
        ("SHAPE", "circular", "shape of the image"),
        ("STACKING", "coadd", "stacking method"),
        ("ROUNDING", 0, "rounding"),
        ("NLIN_COR", False, "non-linearity corrected on board"),
        ("RO_SCRPT", 6, "read-out script"),
        ("RO_HW", "main", "read-out hardware chain"),
        ("RO_FREQU", 230000, "[Hz] read-out frequency"),
    ]


def wcs_columns(target_x: NDArray, target_y: NDArray, roll: NDArray, ra: float,
                dec: float) -> dict[str, NDArray]:
    """Per-frame TAN WCS consistent with :mod:`archi.geometry` (FITS pixels are 1-based)."""
    phi = np.radians(roll)
    k = PLATE_SCALE / 3600.0
    n = len(roll)
    return {
        "CTYPE1": np.full(n, "RA---TAN"), "CRPIX1": target_x + 1.0, "CRVAL1": np.full(n, ra),
        "CUNIT1": np.full(n, "deg"),
        "CTYPE2": np.full(n, "DEC--TAN"), "CRPIX2": target_y + 1.0, "CRVAL2": np.full(n, dec),
        "CUNIT2": np.full(n, "deg"),
        "CD1_1": -np.cos(phi) * k, "CD1_2": np.sin(phi) * k,
        "CD2_1": np.sin(phi) * k, "CD2_2": np.cos(phi) * k,
    }


def cor_metadata(times: Times, target_x: NDArray, target_y: NDArray, roll: NDArray,
                 cfg: SimulationConfig, read_noise_e: float) -> dict[str, NDArray]:
    n = len(times.mjd_tt)
    phase = 2 * np.pi * (times.mjd_tt - times.mjd_tt[0]) * 1440.0 / cfg.orbit_minutes
    data: dict[str, NDArray] = {"UTC_TIME": times.utc, "MJD_TIME": times.mjd_tt,
                                "BJD_TIME": times.bjd_tdb}
    data.update(wcs_columns(target_x, target_y, roll, cfg.ra, cfg.dec))
    data.update({
        "LOS_TO_SUN_ANGLE": np.full(n, 120.0), "LOS_TO_MOON_ANGLE": np.full(n, 60.0),
        "LOS_TO_EARTH_ANGLE": 40.0 + 30.0 * np.cos(phase),
        "LATITUDE": 90.0 * np.sin(phase), "LONGITUDE": np.mod(np.degrees(phase), 360) - 180,
        "CE_COUNTER": np.arange(n), "CE_INTEGRITY": np.zeros(n, np.uint8),
        "HK_VOLT_FEE_VOD": np.full(n, 30.8), "HK_VOLT_FEE_VRD": np.full(n, 17.8),
        "HK_VOLT_FEE_VOG": np.full(n, 3.05), "HK_VOLT_FEE_VSS": np.full(n, 8.8),
        "HK_TEMP_FEE_CCD": np.full(n, -40.0), "HK_TEMP_FEE_ADC": np.full(n, -5.0),
        "HK_TEMP_FEE_BIAS": np.full(n, -10.0), "ADC_N5V": np.full(n, -5.0),
        "ADC_TEMP1": np.full(n, 20.0),
        **{f"thermAft_{i}": np.full(n, -11.0) for i in range(1, 5)},
        **{f"thermFront_{i}": np.full(n, -12.0) for i in range(1, 5)},
        "BIAS": np.full(n, 563.43), "RON": np.full(n, read_noise_e / GAIN_E_PER_ADU),
    })
    # the tube warms back to nominal over hours after the visit starts (pycheops' "ramp")
    hours = (times.mjd_tt - times.mjd_tt[0]) * 24.0
    data["thermFront_2"] = -12.0 - 0.6 * np.exp(-hours / 2.0)
    return data


def centroid_table(times: Times, location: tuple[float, float], cx: NDArray,
                   cy: NDArray) -> dict[str, NDArray]:
    n = len(cx)
    return {"UTC_TIME": times.utc, "MJD_TIME": times.mjd_tt, "BJD_TIME": times.bjd_tdb,
            "IMAGE_INDEX": np.arange(n), "LOCATION_X": np.full(n, location[0]),
            "LOCATION_Y": np.full(n, location[1]), "CENTROID_X": cx, "CENTROID_Y": cy,
            "VALIDITY": np.zeros(n, np.uint8)}


def lightcurve_table(times: Times, flux: NDArray, flux_err: NDArray, status: NDArray,
                     event: NDArray, dark: NDArray, background: NDArray, conta: NDArray,
                     roll: NDArray, location: tuple[float, float], cx: NDArray,
                     cy: NDArray) -> dict[str, NDArray]:
    n = len(flux)
    zeros = np.zeros(n)
    return {"UTC_TIME": times.utc, "MJD_TIME": times.mjd_tt, "BJD_TIME": times.bjd_tdb,
            "FLUX": flux, "FLUXERR": flux_err, "STATUS": status, "EVENT": event,
            "DARK": dark, "BACKGROUND": background, "CONTA_LC": conta,
            "CONTA_LC_ERR": 0.05 * conta, "SMEARING_LC": zeros, "SMEARING_LC_ERR": zeros,
            "ROLL_ANGLE": roll, "LOCATION_X": np.full(n, location[0]),
            "LOCATION_Y": np.full(n, location[1]), "CENTROID_X": cx, "CENTROID_Y": cy}


def lightcurve_cards(aperture: str, radius: float, flux: NDArray, texptime: float) -> list[Card]:
    median = float(np.nanmedian(flux))
    return [
        ("DATANAME", aperture, "data name of this light curve"),
        ("ROBMEAN", int(round(median / texptime)), "[photons/s] robust mean of the light-curve"),
        ("MEDIAN", int(round(median / texptime)), "[photons/s] median of the light-curve"),
        ("AP_RADI", float(radius), "[pixel] Aperture radius used for the photometry"),
        ("AP_TYPE", "Moving", "Fixed with respect to the readout window or moving"),
        ("AP_CEN_X", 0.0, "[pixel] For fixed apertures: X position of the aperture"),
        ("AP_CEN_Y", 0.0, "[pixel] For fixed apertures: Y position of the aperture"),
    ]


def catalogue_table(ids: list[str], ra: NDArray, dec: NDArray, mag: NDArray,
                    t_eff: NDArray, distance_arcsec: NDArray, mag_column: str
                    ) -> dict[str, NDArray]:
    n = len(ra)
    is_target = np.arange(n) == 0
    err = np.where(is_target, np.nan, 1e-7)
    return {"ID": np.array(ids), "TARGET": is_target, "RA": ra, "RA_ERR": err, "DEC": dec,
            "DEC_ERR": err, "DISTANCE": distance_arcsec, mag_column: mag,
            f"{mag_column}_ERR": np.full(n, 0.003), "T_EFF": t_eff,
            "T_EFF_ERR": np.full(n, 100.0)}


def catalogue_cards(cfg: SimulationConfig, obs_epoch: float) -> list[Card]:
    return [
        ("DATANAME", f"OBSID{cfg.obsid:010d}", "data name"),
        ("OBSEPOCH", obs_epoch, "[year] epoch of the positions"),
        ("CENT_RA", float(cfg.ra), "[deg] RA of the field centre at OBSEPOCH"),
        ("CENT_DEC", float(cfg.dec), "[deg] DEC of the field centre at OBSEPOCH"),
        ("GAIN", 1.0 / 1.957, "[ADU/e] gain"),
        ("FOV", 551.0, "[arcsec] radius of the catalogue field"),
    ]


// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";

/// @title DroughtIndexFeed
/// @notice A Chainlink-style price feed of one region's drought severity (6 decimals, 0 .. 5e6), so
///         contracts written against AggregatorV3Interface can read it. Each accepted report is a round.
/// @dev startedAt is the report's observedAt (end of the observation window); updatedAt is the block
///      time the report was accepted.
contract DroughtIndexFeed is AggregatorV3Interface, IReportSubscriber {
    struct Round {
        int256 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    IOracleRouter public immutable router;
    bytes32 public immutable region;
    string private _description;
    uint80 private _latestRound;
    mapping(uint80 => Round) private _rounds;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    error NotRouter(address caller);

    constructor(IOracleRouter router_, bytes32 region_, string memory description_) {
        router = router_;
        region = region_;
        _description = description_;
    }

    /// @notice Start receiving the region's reports. Anyone may call it once the router's owner has
    ///         approved this feed as a consumer.
    function subscribe() external {
        router.subscribe(region);
    }

    function decimals() external pure override returns (uint8) {
        return 6;
    }

    function description() external view override returns (string memory) {
        return _description;
    }

    function version() external pure override returns (uint256) {
        return 1;
    }

    function getRoundData(uint80 roundId)
        public
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        Round memory r = _rounds[roundId];
        // Same refusal as Chainlink's aggregators: a missing round is an error, not a zero answer.
        require(r.updatedAt != 0, "No data present");
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        return getRoundData(_latestRound);
    }

    /// @inheritdoc IReportSubscriber
    function onReport(Report calldata report) external override {
        if (msg.sender != address(router)) revert NotRouter(msg.sender);
        if (report.kind != ReportKinds.DROUGHT_SEVERITY || report.subject != region) return;
        uint80 roundId = _latestRound + 1;
        _latestRound = roundId;
        _rounds[roundId] = Round(report.value, report.observedAt, uint64(block.timestamp));
        emit AnswerUpdated(report.value, roundId, block.timestamp);
    }
}

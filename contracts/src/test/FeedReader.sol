// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

/// @notice Test helper: a consumer that only knows Chainlink's AggregatorV3Interface.
contract FeedReader {
    AggregatorV3Interface public immutable feed;

    constructor(AggregatorV3Interface feed_) {
        feed = feed_;
    }

    /// @return severity the latest answer scaled to whole units (floor), and its round
    function latestSeverity() external view returns (int256 severity, uint80 roundId, uint256 updatedAt) {
        (uint80 id, int256 answer,, uint256 updated,) = feed.latestRoundData();
        return (answer / int256(10 ** feed.decimals()), id, updated);
    }

    function inDrought(int256 threshold) external view returns (bool) {
        (, int256 answer,,,) = feed.latestRoundData();
        return answer >= threshold;
    }
}
